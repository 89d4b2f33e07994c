"""rankbench plan and --shard: a suite's graph, its shares, and the one-builder cache lock."""
from __future__ import annotations

import json
import multiprocessing
import time
from pathlib import Path

import pytest

from harness.plan import STEPS, parse_shard, plan_suite
from harness.runner import Runner, suite_cells

ROOT = Path(__file__).resolve().parents[1]


def _runner(config, tmp_path):
    return Runner(config, tmp_path / "reports", progress=False)


@pytest.mark.parametrize("suite", ["smoke", "quick", "quantized", "distill"])
def test_shards_cover_every_cell_exactly_once(config, tmp_path, suite):
    """The real bench.toml: for 1 to 5 shares, each cell is in one share only, the shares differ
    by at most one cell, and each share carries every node its cells need, in dependency order."""
    runner = _runner(config, tmp_path)
    plan = plan_suite(runner, suite)
    cells = [c.id for c in plan.cells()]
    assert cells == [f"cell:{r}@{d}" for r, d in suite_cells(config.suite(suite))]
    for n in range(1, 6):
        shares = [plan.shard(i, n) for i in range(n)]
        got = [c.id for s in shares for c in s.cells()]
        assert sorted(got) == sorted(cells) and len(got) == len(set(got))
        sizes = [len(s.cells()) for s in shares]
        assert max(sizes) - min(sizes) <= 1
        for share in shares:
            seen: set[str] = set()
            for node in share:
                assert set(node.deps) <= seen, f"{node.id} comes before what it needs"
                seen.add(node.id)
    # every node of the plan is needed by some cell, and comes after what it needs
    assert set(plan.needs(cells)) == set(plan.nodes)


def test_plan_names_training_exports_indexes_and_first_stages(config, tmp_path):
    runner = _runner(config, tmp_path)
    plan = plan_suite(runner, "quantized")
    steps = {n.step for n in plan}
    assert {"train", "export", "index", "run", "cell"} <= steps
    node = plan.nodes["train:ce-distilled-student"]
    assert node.deps == ["train:ce-distilled"] and node.area == "models"
    assert plan.nodes["train:ce-distilled"].deps == ["train:ce-teacher"]
    # one export node per cache entry: a ranker that extends another shares its export
    exports = [n for n in plan if n.step == "export"]
    assert len({n.key for n in exports}) == len(exports)
    cell = plan.nodes["cell:ce-distilled-student-int8-dynamic-rerank-bm25@scifact"]
    needed = plan.needs([cell.id])
    assert "train:ce-distilled-student" in needed and any(i.startswith("export:") for i in needed)
    assert any(i.startswith("run:bm25@scifact") for i in needed)
    assert any(i.startswith("index:bm25@scifact") for i in needed)
    # the same keys the runner caches under
    ds = runner.dataset("scifact")
    assert cell.key == runner.run_key(cell.ranker, ds, cell.k)


def test_plan_sees_the_cache(toy, capsys):
    """Empty cache: all to do; after the suite ran: runs and indexes cached, cells up to date."""
    code, out = toy.cli("plan", "s", "--json", capsys=capsys)
    assert code == 0
    before = json.loads(out)
    assert before["counts"]["cell"] == {"total": 4, "cached": 0}
    assert not any(n["cached"] for n in before["nodes"])
    assert toy.cli("run", "s", "--no-progress", capsys=capsys)[0] == 0
    code, out = toy.cli("plan", "s", "--json", capsys=capsys)
    after = json.loads(out)
    assert all(n["cached"] for n in after["nodes"]), [n["id"] for n in after["nodes"] if not n["cached"]]
    code, text = toy.cli("plan", "s", capsys=capsys)
    assert "plan of suite s: " in text and "0 to do" in text and "cached cell:bm25s@toy" in text


def test_run_shard_runs_its_share_only(toy, capsys):
    code, out = toy.cli("run", "s", "--shard", "2/3", "--no-progress", capsys=capsys)
    assert code == 0 and "no report written" in out
    written = sorted(p.name for p in (toy.reports / "results" / "s").glob("*.json"))
    # cells in suite order: first, bm25s, oracle-first, random-first -> share 2 of 3 is bm25s
    assert written == ["bm25s__toy.json"]
    assert not (toy.reports / "s.md").exists()
    for bad in ("0/3", "4/3", "x", "1/0"):
        code, out = toy.cli("run", "s", "--shard", bad, capsys=capsys)
        assert code == 2 and "--shard" in out


def test_parse_shard():
    assert parse_shard("1/1") == (0, 1) and parse_shard("3/4") == (2, 4)


def _build(home: str, key: str, log: str, q) -> None:
    from harness.cache import Cache

    def build(folder):
        with open(log, "a") as f:
            f.write("built\n")
        time.sleep(0.5)
        (folder / "x.txt").write_text(key)

    path, entry = Cache(Path(home)).artifact("test-area", key, {"what": "test entry"}, build)
    q.put((str(path), (path / "x.txt").read_text()))


def test_two_processes_build_one_entry_once(tmp_path):
    """Two processes ask for the same entry at once: one builds it, the other waits and reads it."""
    ctx = multiprocessing.get_context("spawn")
    q = ctx.Queue()
    log = tmp_path / "builds.log"
    procs = [ctx.Process(target=_build, args=(str(tmp_path / "home"), "k" * 64, str(log), q)) for _ in range(3)]
    for p in procs:
        p.start()
    got = [q.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert log.read_text() == "built\n"
    assert len({g for g in got}) == 1 and got[0][1] == "k" * 64


def test_lock_is_reentrant_in_a_process(tmp_path):
    from harness.cache import Cache

    cache = Cache(tmp_path)
    with cache.lock("runs", "a" * 64):
        with cache.lock("runs", "a" * 64):       # a run's lock, taken again inside the same build
            with cache.lock("runs", "b" * 64):
                pass


def test_steps_order():
    assert STEPS[-1] == "cell" and STEPS[0] == "train"


@pytest.mark.golden
def test_scale_report_is_its_json():
    """reports/scale.md is what reports/results/scale.json renders to; every mode's embeddings were
    the one-process ones, the Ray runs gave the local measures, the shards the one-process corpus."""
    from distributed.scale import markdown

    data = json.loads((ROOT / "reports" / "results" / "scale.json").read_text())
    assert (ROOT / "reports" / "scale.md").read_text() == markdown(data)
    assert all(r["identical"] for e in data["encoding"] for r in e["rows"])
    assert all(r["same_measures"] for r in data["overhead"])
    assert data["sharded"]["identical"] and data["sharded"]["nodes"] == 2
    beir = json.loads((ROOT / "reports" / "results" / "beir" / "minilm__nfcorpus.json").read_text())
    assert data["sharded"]["ndcg10"] == beir["measures"]["aggregate"]["nDCG@10"]
    q = data["quick_suite"]       # issue 18's first acceptance: the quick suite on Ray, as the local run
    assert q["same_cells"] == q["ran"] and q["same_runs"] == q["runs"] > 0 and q["same_corpora"] == q["corpora"] > 0
