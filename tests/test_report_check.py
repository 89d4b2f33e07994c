"""Reports and regression checks, on real runs and on the committed results."""
from __future__ import annotations

import json
import shutil
import tomllib

import pytest
import tomli_w

from conftest import ROOT
from harness.check import check_suite, read_baselines
from harness.verdicts import effectiveness_verdict, latency_verdict, published_verdict, trec_eval_order, win_tie_loss
from harness.cli import main
from harness.report import build_report, report_path
from harness.runner import Runner
from harness.suite_results import load_results

REPORTS = ROOT / "reports"


@pytest.fixture(scope="module")
def fresh_smoke(tmp_path_factory, config):
    """The smoke suite run now, from scratch (a fresh cache home), beside the committed baselines."""
    reports = tmp_path_factory.mktemp("smoke-reports")
    outcomes = Runner(config, reports, progress=False).run_suite("smoke")
    assert not [o for o in outcomes if o.status == "error"], outcomes
    shutil.copy(REPORTS / "baselines.toml", reports / "baselines.toml")
    return reports


def _on_another_machine(reports):
    """Latency is compared only on the baseline's machine: make this one another, so the check
    is about effectiveness (a loaded test machine must not fail it)."""
    data = read_baselines(reports)
    data["smoke"]["machine"]["id"] = "another-machine"
    (reports / "baselines.toml").write_text(tomli_w.dumps(data))


@pytest.mark.jvm
def test_check_smoke_passes_on_a_fresh_run(fresh_smoke, config, capsys):
    _on_another_machine(fresh_smoke)
    verdicts = check_suite(config, fresh_smoke, "smoke")
    assert verdicts and not [v for v in verdicts if v.verdict == "FAIL"]
    effectiveness = [v for v in verdicts if not v.key.startswith("latency") and v.verdict != "NEW"]
    assert {v.verdict for v in effectiveness} == {"OK"}            # deterministic rankers: exact
    assert {v.verdict for v in verdicts if v.key.startswith("latency")} == {"SKIP"}
    assert main(["check", "smoke", "--reports", str(fresh_smoke)]) == 0


@pytest.mark.jvm
def test_check_fails_and_names_the_cell_when_a_baseline_is_perturbed(fresh_smoke, config, capsys):
    _on_another_machine(fresh_smoke)
    data = read_baselines(fresh_smoke)
    data["smoke"]["cells"]["bm25/vaswani"]["nDCG@10"] += 0.01       # the baseline was better
    (fresh_smoke / "baselines.toml").write_text(tomli_w.dumps(data))
    verdicts = check_suite(config, fresh_smoke, "smoke")
    failed = [v for v in verdicts if v.verdict == "FAIL"]
    assert [(v.cell, v.key) for v in failed] == [("bm25/vaswani", "nDCG@10")]
    capsys.readouterr()
    assert main(["check", "smoke", "--reports", str(fresh_smoke), "--quiet"]) == 1
    err = capsys.readouterr()
    assert "FAIL in 1 cell(s): bm25/vaswani" in err.err
    assert "FAIL  bm25/vaswani" in err.out
    # a worse baseline (we improved) is OKISH, not FAIL
    data["smoke"]["cells"]["bm25/vaswani"]["nDCG@10"] -= 0.02
    (fresh_smoke / "baselines.toml").write_text(tomli_w.dumps(data))
    v = [v for v in check_suite(config, fresh_smoke, "smoke") if v.cell == "bm25/vaswani" and v.key == "nDCG@10"]
    assert v[0].verdict == "OKISH"
    shutil.copy(REPORTS / "baselines.toml", fresh_smoke / "baselines.toml")


def test_verdict_rules():
    assert effectiveness_verdict(0.5, 0.5, 0.0005) == "OK"
    assert effectiveness_verdict(0.4997, 0.5, 0.0005) == "OKISH"
    assert effectiveness_verdict(0.51, 0.5, 0.0005) == "OKISH"
    assert effectiveness_verdict(0.499, 0.5, 0.0005) == "FAIL"
    assert latency_verdict(9.0, 10.0, 0.5) == "OK"
    assert latency_verdict(14.0, 10.0, 0.5) == "OKISH"
    assert latency_verdict(16.0, 10.0, 0.5) == "FAIL"
    assert latency_verdict(16.0, 10.0, 0.5, slack_ms=1.0) == "OKISH"      # 16 <= 15 + 1
    assert latency_verdict(0.25, 0.12, 0.5, slack_ms=1.0) == "OKISH"      # microsecond noise
    assert latency_verdict(16.5, 10.0, 0.5, slack_ms=1.0) == "FAIL"
    assert published_verdict(0.6789, 0.6789, 0.0005) == "OK"
    assert published_verdict(0.6794, 0.6789, 0.0005) == "OK"       # exactly at the tolerance
    assert published_verdict(0.6795, 0.6789, 0.0005) == "FAIL"
    assert published_verdict(None, 0.6789, 0.0005) == "FAIL"


def test_one_win_tie_loss_and_one_tie_order_for_every_table():
    a, b = {"q1": 0.5, "q2": 0.2, "q3": 0.1}, {"q1": 0.4, "q2": 0.2, "q3": 0.3}
    assert win_tie_loss(a, b) == (1, 1, 1)
    assert win_tie_loss(a, b, ["q1"]) == (1, 0, 0)
    # trec_eval's order: score descending, ties by doc id descending (what pytrec_eval measures)
    assert trec_eval_order({"d1": 1.0, "d3": 1.0, "d2": 2.0, "d10": 1.0}) == ["d2", "d3", "d10", "d1"]


def test_the_tables_agree_with_trec_eval_on_tied_scores():
    """Tied documents: the order compare shows is the one pytrec_eval measures (nDCG, P, AP, R:
    ties by doc id descending). ir_measures computes RR with its MS MARCO evaluator, which puts
    the ascending doc id first; rankbench keeps both as they are (the published figures it
    reproduces were computed so), and this test notices if either changes."""
    from harness.measures import evaluate

    run = {"q": {"d1": 1.0, "d2": 1.0}}
    assert trec_eval_order(run["q"]) == ["d2", "d1"]
    for m in ("nDCG@1", "P@1", "AP@1", "Success@1"):
        assert evaluate(run, {"q": {"d2": 1}}, [m]).aggregate[m] == 1.0, m
        assert evaluate(run, {"q": {"d1": 1}}, [m]).aggregate[m] == 0.0, m
    assert evaluate(run, {"q": {"d1": 1}}, ["RR@1"]).aggregate["RR@1"] == 1.0      # MS MARCO evaluator



@pytest.mark.jvm
def test_latency_is_compared_on_the_baselines_machine(fresh_smoke, config):
    # the rule under test is the relative one: no absolute slack, and compared however busy the machine
    import dataclasses

    config = dataclasses.replace(config, check=dataclasses.replace(config.check, latency_slack_ms=0.0,
                                                                   latency_busy_cores=1000.0))
    data = read_baselines(fresh_smoke)
    cell = json.loads((fresh_smoke / "results/smoke/bm25s__vaswani.json").read_text())
    data["smoke"]["machine"]["id"] = cell["provenance"]["machine"]["id"]
    data["smoke"]["cells"]["bm25s/vaswani"]["latency_p50_ms"] = cell["efficiency"]["latency_ms"]["p50"] / 10
    (fresh_smoke / "baselines.toml").write_text(tomli_w.dumps(data))
    lat = [v for v in check_suite(config, fresh_smoke, "smoke") if v.key == "latency_p50_ms"
           and v.cell == "bm25s/vaswani"]
    assert lat[0].verdict == "FAIL"
    shutil.copy(REPORTS / "baselines.toml", fresh_smoke / "baselines.toml")


@pytest.mark.jvm
def test_accept_writes_one_suite_and_keeps_the_others(fresh_smoke, config):
    before = read_baselines(fresh_smoke)
    assert main(["accept", "smoke", "--reports", str(fresh_smoke)]) == 0
    after = tomllib.loads((fresh_smoke / "baselines.toml").read_text())
    assert set(after) == set(before)
    for suite in set(before) - {"smoke"}:
        assert after[suite] == before[suite]
    assert after["smoke"]["cells"]["bm25/vaswani"]["nDCG@10"] == before["smoke"]["cells"]["bm25/vaswani"]["nDCG@10"]
    shutil.copy(REPORTS / "baselines.toml", fresh_smoke / "baselines.toml")


@pytest.mark.jvm
def test_report_is_deterministic_and_shows_what_matters(fresh_smoke, config):
    a = build_report(config, fresh_smoke, "smoke")
    b = build_report(config, fresh_smoke, "smoke")
    assert a == b
    assert "| bm25-run | dl19 | nDCG@10 | 0.5058 | 0.5058 | +0.0000 | 0.0001 | OK |" in a
    assert "**0.8922**" in a                                 # the oracle is best on dl19
    assert "rankbench run smoke --ranker bm25 --dataset vaswani" in a


@pytest.mark.golden
def test_committed_reports_are_not_stale(config):
    for suite in config.suites:
        path = report_path(REPORTS, suite)
        if path.exists():
            assert path.read_text() == build_report(config, REPORTS, suite), \
                f"{path} is stale: run `rankbench report {suite}`"
    assert main(["report", "smoke", "--check"]) == 0


@pytest.mark.jvm
def test_a_stale_report_is_detected(fresh_smoke, config):
    path = report_path(fresh_smoke, "smoke")
    path.write_text(build_report(config, fresh_smoke, "smoke") + "edited by hand\n")
    assert main(["report", "smoke", "--check", "--reports", str(fresh_smoke)]) == 1


@pytest.mark.golden
def test_committed_results_reproduce_the_published_figures(config):
    """Acceptance: pyserini BM25, the MiniLM bi-encoder and the published DL runs, as committed."""
    seen = set()
    for suite in config.suites:
        res = load_results(config, REPORTS, suite)
        for e in config.expected:
            cell = res.ok(e.ranker, e.dataset)
            if cell is None:
                continue
            got = cell["measures"]["aggregate"][e.measure]
            assert abs(got - e.value) <= e.tolerance + 1e-12, (suite, e, got)
            seen.add((e.ranker, e.dataset))
    must = {("bm25", "scifact"), ("bm25", "nfcorpus"), ("minilm", "scifact"), ("minilm", "nfcorpus"),
            ("bm25-run", "dl19"), ("bm25-run", "dl20"), ("bm25", "scifact-irds"), ("minilm", "scifact-irds")}
    assert must <= seen


@pytest.mark.golden
def test_committed_irds_scifact_equals_local_scifact(config):
    """Acceptance: the same SciFact numbers through irds:beir/scifact/test as through local:."""
    res = load_results(config, REPORTS, "beir")
    compared = 0
    for ranker in res.suite.rankers:
        a, b = res.ok(ranker, "scifact"), res.ok(ranker, "scifact-irds")
        if a and b:
            assert a["measures"] == b["measures"], ranker
            assert a["fingerprints"]["dataset"] != b["fingerprints"]["dataset"]
            compared += 1
    assert compared >= 4


@pytest.mark.jvm
def test_significance_on_real_per_query_values(fresh_smoke):
    cells = {r: json.loads((fresh_smoke / f"results/smoke/{r}__dl19.json").read_text())
             for r in ("oracle-rerank-bm25run", "random-rerank-bm25run", "bm25-run")}
    from harness.significance import Tester

    wins = Tester().all_pairs({r: c["measures"]["per_query"]["nDCG@10"] for r, c in cells.items()}, 0.05)
    assert wins["oracle-rerank-bm25run"] == {"random-rerank-bm25run", "bm25-run"}
    assert wins["random-rerank-bm25run"] == set()


def test_check_passes_while_other_processes_keep_both_cores_busy(toy, tmp_path, capsys, monkeypatch):
    """Latency is a baseline only on a quiet machine: timed while other processes keep the cores
    busy, it is recorded with how busy they kept them and not compared (SKIP, saying why), and
    the check passes. Two busy loops, bounded in time, stopped in any case."""
    import os
    import subprocess
    import sys

    monkeypatch.setenv("RANKBENCH_HOME", str(tmp_path / "home"))
    assert toy.cli("run", "s", "--no-progress", "--no-report", capsys=capsys)[0] == 0
    assert toy.cli("accept", "s", capsys=capsys)[0] == 0
    busy = [subprocess.Popen([sys.executable, "-c", "import time\nt = time.time()\nwhile time.time() - t < 60: pass"])
            for _ in range(os.cpu_count() or 2)]
    try:
        assert toy.cli("run", "s", "--no-progress", "--no-report", "--force", capsys=capsys)[0] == 0
    finally:
        for p in busy:
            p.kill()
            p.wait()
    loads = [json.loads(p.read_text())["efficiency"]["other_load_cores"]
             for p in (toy.reports / "results" / "s").glob("*.json")]
    assert len(loads) == 4 and min(loads) > 0.5, loads
    code, out = toy.cli("check", "s", capsys=capsys)
    assert code == 0, out
    skipped = [line for line in out.splitlines() if line.startswith("SKIP") and "latency_p50_ms" in line]
    assert len(skipped) == 3 and all("cores busy" in line for line in skipped), out
    assert "FAIL" not in out
