"""The runner: cells cached by content, resumable, contract-checked, conventions applied."""
from __future__ import annotations

import json

import pytest

from conftest import DATASETS, ROOT, write_beir
from harness.cache import Cache
from harness.config import parse_config
from harness.results import result_path
from harness.runner import Runner
from rankers.base import Ranker


def make_config(datasets: dict, rankers: dict, suites: dict, settings=None):
    raw = {"datasets": datasets, "rankers": rankers, "suites": suites,
           "settings": settings or {"latency_queries": 3, "latency_warmup": 1}}
    return parse_config(raw, ROOT / "test-bench.toml")


@pytest.fixture
def sample_config(scifact_sample):
    return make_config(
        {"sample": f"local:{scifact_sample}", "dl19": f"local:{DATASETS / 'trec-dl-2019'}"},
        {"bm25s": {"kind": "bm25", "backend": "bm25s"},
         "rnd": {"kind": "random", "first_stage": "bm25s", "depth": 20},
         "orc": {"kind": "oracle", "first_stage": "bm25s", "depth": 20}},
        {"s": {"rankers": ["bm25s", "rnd", "orc"], "datasets": ["sample", "dl19"]}})


def statuses(outcomes):
    return {(o.ranker, o.dataset): o.status for o in outcomes}


def test_cells_are_cached_by_content_and_resumed(sample_config, tmp_path, rankbench_home):
    reports = tmp_path / "reports"
    first = Runner(sample_config, reports, progress=False).run_suite("s")
    st = statuses(first)
    assert st[("bm25s", "sample")] == "ran"
    assert st[("bm25s", "dl19")] == "n/a" and st[("orc", "dl19")] == "n/a"
    na = json.loads(result_path(reports, "s", "orc", "dl19").read_text())
    assert "first stage bm25s" in na["reason"] and "reranking set" in na["reason"]
    ok = json.loads(result_path(reports, "s", "orc", "sample").read_text())
    assert ok["status"] == "ok" and ok["measures"]["aggregate"]["nDCG@10"] > 0.9

    again = Runner(sample_config, reports, progress=False).run_suite("s")
    assert {s for (r, d), s in statuses(again).items() if d == "sample"} == {"up-to-date"}

    # a lost result file is rebuilt from the cached run, with identical numbers
    path = result_path(reports, "s", "rnd", "sample")
    before = json.loads(path.read_text())["measures"]
    path.unlink()
    third = Runner(sample_config, reports, progress=False).run_suite("s", rankers=["rnd"], datasets=["sample"])
    assert statuses(third) == {("rnd", "sample"): "cached-run"}
    assert json.loads(path.read_text())["measures"] == before



def test_a_run_measured_again_in_another_suite_refreshes_every_suite_quoting_it(scifact_sample, tmp_path,
                                                                                rankbench_home):
    """Two suites share a cached run; forcing it in one re-times it, and the other's result,
    otherwise up to date, takes the new figures instead of quoting the old ones."""
    config = make_config({"sample": f"local:{scifact_sample}"},
                         {"bm25s": {"kind": "bm25", "backend": "bm25s"},
                          "rnd": {"kind": "random", "first_stage": "bm25s", "depth": 20}},
                         {"a": {"rankers": ["bm25s", "rnd"], "datasets": ["sample"]},
                          "b": {"rankers": ["rnd"], "datasets": ["sample"]}})
    reports = tmp_path / "reports"
    Runner(config, reports, progress=False).run_suite("a")
    assert statuses(Runner(config, reports, progress=False).run_suite("b")) == {("rnd", "sample"): "cached-run"}
    assert statuses(Runner(config, reports, progress=False).run_suite("b")) == {("rnd", "sample"): "up-to-date"}
    before = json.loads(result_path(reports, "b", "rnd", "sample").read_text())["efficiency"]
    forced = Runner(config, reports, progress=False, force=True).run_suite("a", rankers=["rnd"])
    assert statuses(forced) == {("rnd", "sample"): "ran"}
    new = json.loads(result_path(reports, "a", "rnd", "sample").read_text())["efficiency"]
    assert new != before          # timed again: at least the latency differs
    assert statuses(Runner(config, reports, progress=False).run_suite("b")) == {("rnd", "sample"): "cached-run"}
    assert json.loads(result_path(reports, "b", "rnd", "sample").read_text())["efficiency"] == new


def test_fingerprints_follow_content_not_names(scifact_sample, tmp_path):
    def key(rankers, name):
        cfg = make_config({"sample": f"local:{scifact_sample}"}, rankers,
                          {"s": {"rankers": [name], "datasets": ["sample"]}})
        r = Runner(cfg, tmp_path, progress=False)
        return r.run_key(name, r.dataset("sample"), 1000)

    base = key({"a": {"kind": "bm25", "backend": "bm25s"}}, "a")
    assert key({"renamed": {"kind": "bm25", "backend": "bm25s"}}, "renamed") == base
    assert key({"a": {"kind": "bm25", "backend": "bm25s", "threads": 1}}, "a") == base   # operational
    assert key({"a": {"kind": "bm25", "backend": "bm25s", "k1": 1.2}}, "a") != base
    # a reranker's key changes with its first stage and its depth
    r1 = key({"f": {"kind": "bm25", "backend": "bm25s"}, "r": {"kind": "random", "first_stage": "f", "depth": 20}}, "r")
    r2 = key({"f": {"kind": "bm25", "backend": "bm25s", "k1": 1.2},
              "r": {"kind": "random", "first_stage": "f", "depth": 20}}, "r")
    r3 = key({"f": {"kind": "bm25", "backend": "bm25s"}, "r": {"kind": "random", "first_stage": "f", "depth": 30}}, "r")
    assert len({r1, r2, r3}) == 3


def test_an_interrupted_suite_keeps_finished_cells_and_leaves_no_debris(sample_config, tmp_path, monkeypatch):
    reports = tmp_path / "reports"
    real = Runner.get_run
    calls = {"n": 0}

    def interrupt_second_computation(self, *a, **kw):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(self, *a, **kw)

    monkeypatch.setattr(Runner, "get_run", interrupt_second_computation)
    with pytest.raises(KeyboardInterrupt):
        Runner(sample_config, reports, progress=False, force=True).run_suite("s", datasets=["sample"])
    monkeypatch.setattr(Runner, "get_run", real)
    assert result_path(reports, "s", "bm25s", "sample").exists()
    assert not result_path(reports, "s", "rnd", "sample").exists()
    leftovers = [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]
    leftovers += [p for p in Cache().home.rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []
    resumed = Runner(sample_config, reports, progress=False).run_suite("s", datasets=["sample"])
    assert statuses(resumed)[("bm25s", "sample")] == "up-to-date"
    assert statuses(resumed)[("rnd", "sample")] in ("ran", "cached-run")


class Liar(Ranker):
    """Breaks the contract: returns a document that was not among its candidates."""

    kind = "liar"
    reranks = True
    retrieves = False

    def rank(self, queries, candidates, k):
        return {q: {"not-a-candidate": 1.0} for q in queries}


def test_a_contract_violation_fails_its_cell_only_and_keeps_the_old_result(scifact_sample, tmp_path):
    reports = tmp_path / "reports"
    good = make_config({"sample": f"local:{scifact_sample}"},
                       {"first": {"kind": "bm25", "backend": "bm25s"},
                        "x": {"kind": "random", "first_stage": "first", "depth": 10}},
                       {"s": {"rankers": ["first", "x"], "datasets": ["sample"]}})
    Runner(good, reports, progress=False).run_suite("s")
    kept = result_path(reports, "s", "x", "sample").read_text()
    bad = make_config({"sample": f"local:{scifact_sample}"},
                      {"first": {"kind": "bm25", "backend": "bm25s"},
                       "x": {"kind": "test_runner:Liar", "first_stage": "first", "depth": 10}},
                      {"s": {"rankers": ["first", "x"], "datasets": ["sample"]}})
    out = Runner(bad, reports, progress=False).run_suite("s")
    st = {o.ranker: o for o in out}
    assert st["first"].status == "up-to-date"
    assert st["x"].status == "error" and "not among its candidates" in st["x"].message
    assert result_path(reports, "s", "x", "sample").read_text() == kept


def test_beir_drops_hits_whose_id_is_the_query_id(tmp_path):
    corpus = [{"_id": "q1", "title": "", "text": "the query itself"},
              {"_id": "d1", "title": "", "text": "relevant"},
              {"_id": "d2", "title": "", "text": "other"}]
    run = "q1 Q0 q1 1 3.0 r\nq1 Q0 d1 2 2.0 r\nq1 Q0 d2 3 1.0 r\n"
    for conv, expected in (("beir", 1.0), ("generic", None)):
        folder = write_beir(tmp_path / conv, corpus, [{"_id": "q1", "text": "query"}], {"q1": {"d1": 1}},
                            runs={"r": run}, meta=f'conventions = "{conv}"\n')
        cfg = make_config({"d": f"local:{folder}"}, {"r": {"kind": "run", "run": "r"}},
                          {"s": {"rankers": ["r"], "datasets": ["d"]}})
        Runner(cfg, tmp_path / f"rep-{conv}", progress=False).run_suite("s")
        got = json.loads(result_path(tmp_path / f"rep-{conv}", "s", "r", "d").read_text())
        rr = got["measures"]["aggregate"]["RR@10"]
        assert rr == (expected if expected is not None else 0.5)


def test_efficiency_and_provenance_are_recorded(sample_config, tmp_path):
    reports = tmp_path / "reports"
    Runner(sample_config, reports, progress=False, force=True).run_suite("s", rankers=["bm25s", "rnd"],
                                                                          datasets=["sample"])
    r = json.loads(result_path(reports, "s", "bm25s", "sample").read_text())
    e = r["efficiency"]
    assert e["queries"] == 30 and e["qps"] > 0 and e["index_bytes"] > 0
    assert e["latency_ms"]["n"] == 3 and 0 < e["latency_ms"]["p50"] <= e["latency_ms"]["p99"]
    assert e["peak_rss_mib"] > 0
    assert r["provenance"]["machine"]["cores"] >= 1 and "ir-measures" in r["provenance"]["packages"]
    assert r["command"] == "rankbench run s --ranker bm25s --dataset sample"
    assert set(r["measures"]["per_query"]["nDCG@10"]) == set(json.loads(
        result_path(reports, "s", "rnd", "sample").read_text())["measures"]["per_query"]["nDCG@10"])
    rr = json.loads(result_path(reports, "s", "rnd", "sample").read_text())["efficiency"]
    assert rr["pairs"] == 30 * 20 and rr["first_stage"]["ranker"] == "bm25s"
    assert rr["latency_ms"]["scope"] == "end to end"


def test_a_run_file_path_resolves_against_the_config_folder(tmp_path):
    (tmp_path / "runs").mkdir()
    text = "\n".join(f"264014 Q0 {d} {i} {10 - i}.0 mine" for i, d in enumerate(["5611210", "6641238"], 1))
    (tmp_path / "runs" / "mine.trec").write_text(text + "\n")
    raw = {"datasets": {"dl19": f"local:{DATASETS / 'trec-dl-2019'}"},
           "rankers": {"mine": {"kind": "run", "path": "runs/mine.trec"}},
           "suites": {"s": {"rankers": ["mine"], "datasets": ["dl19"]}}}
    cfg = parse_config(raw, tmp_path / "bench.toml")
    out = Runner(cfg, tmp_path / "reports", progress=False).run_suite("s")
    assert [o.status for o in out] == ["ran"]
    got = json.loads(result_path(tmp_path / "reports", "s", "mine", "dl19").read_text())
    assert got["measures"]["per_query"]["nDCG@10"]["264014"] > 0


def test_force_replaces_the_cached_run_and_its_figures(sample_config, tmp_path):
    reports = tmp_path / "reports"
    runner = Runner(sample_config, reports, progress=False)
    runner.run_suite("s", rankers=["bm25s"], datasets=["sample"])
    key = runner.run_key("bm25s", runner.dataset("sample"), 1000)
    first = Cache().entry("runs", key)
    Runner(sample_config, reports, progress=False, force=True).run_suite("s", rankers=["bm25s"], datasets=["sample"])
    second = Cache().entry("runs", key)
    assert second["created"] >= first["created"]
    assert second["efficiency"]["rank_s"] != first["efficiency"]["rank_s"] or \
        second["efficiency"]["latency_ms"] != first["efficiency"]["latency_ms"]
    result = json.loads(result_path(reports, "s", "bm25s", "sample").read_text())
    assert result["efficiency"] == second["efficiency"]


def test_a_result_without_its_run_in_this_cache_is_reproduced(sample_config, tmp_path):
    """A fresh clone (committed results, empty cache) reruns its cells instead of trusting them."""
    import shutil

    reports = tmp_path / "reports"
    runner = Runner(sample_config, reports, progress=False)
    runner.run_suite("s", rankers=["bm25s"], datasets=["sample"])
    before = json.loads(result_path(reports, "s", "bm25s", "sample").read_text())
    key = runner.run_key("bm25s", runner.dataset("sample"), 1000)
    shutil.rmtree(Cache().path("runs", key))
    out = Runner(sample_config, reports, progress=False).run_suite("s", rankers=["bm25s"], datasets=["sample"])
    assert [o.status for o in out] == ["ran"]
    after = json.loads(result_path(reports, "s", "bm25s", "sample").read_text())
    assert after["measures"] == before["measures"]


@pytest.mark.golden
def test_every_committed_efficiency_record_reads_into_the_typed_record_and_back():
    """harness.results.Efficiency is the one shape of a result's "efficiency": every committed
    result, old and new, reads into it and writes back the same JSON."""
    from harness.results import Efficiency

    results = [json.loads(p.read_text()) for p in (ROOT / "reports" / "results").glob("*/*.json")]
    ok = [r for r in results if r["status"] == "ok"]
    assert len(ok) > 100
    for r in ok:
        assert Efficiency.from_json(r["efficiency"]).as_json() == r["efficiency"], (r["suite"], r["ranker"])
    reranking = [r for r in ok if Efficiency.from_json(r["efficiency"]).reranking is not None]
    assert reranking and all(r["ranker_config"]["first_stage"] for r in reranking)


def test_a_fresh_efficiency_record_is_the_typed_one(toy, capsys, tmp_path, monkeypatch):
    from harness.results import Efficiency

    monkeypatch.setenv("RANKBENCH_HOME", str(tmp_path / "home"))
    assert toy.cli("run", "s", "--no-progress", "--no-report", capsys=capsys)[0] == 0
    for ranker in ("first", "bm25s", "random-first"):
        eff = json.loads(result_path(toy.reports, "s", ranker, "toy").read_text())["efficiency"]
        typed = Efficiency.from_json(eff)
        assert typed.as_json() == eff and typed.machine and typed.memory["memory_method"]
        assert (typed.reranking is not None) == (ranker == "random-first")
        if typed.reranking:
            assert typed.reranking.first_stage["ranker"] == "first" and typed.reranking.pairs > 0
