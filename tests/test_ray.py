"""rankbench run --executor ray, on the session's two-node Ray cluster (tests/conftest.py)."""
from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import pytest

pytestmark = pytest.mark.ray

MEASURED = ("measures", "fingerprints", "ranker_config", "dataset_info", "k", "status")


def _results(reports: Path, suite: str) -> dict[str, dict]:
    return {p.name: json.loads(p.read_text()) for p in sorted((reports / "results" / suite).glob("*.json"))}


def _runs(home: Path) -> dict[str, bytes]:
    """Every cached run's TREC file, decompressed (gzip headers carry a time), by cache key."""
    return {p.parent.name: gzip.decompress(p.read_bytes()) for p in (home / "runs").glob("*/*/run.trec.gz")}


def _local(toy, monkeypatch, tmp_path, capsys) -> tuple[Path, Path]:
    home, reports = tmp_path / "home-local", tmp_path / "reports-local"
    monkeypatch.setenv("RANKBENCH_HOME", str(home))
    assert toy.cli("run", "s", "--no-progress", "--reports", str(reports), capsys=capsys)[0] == 0
    return home, reports


def test_ray_executor_equals_the_local_run(toy, ray_cluster, monkeypatch, tmp_path, capsys):
    """Same suite, empty caches: the Ray run's results have the local run's measures and
    fingerprints, its cached runs are the same bytes, and each result names its Ray node."""
    import ray

    local_home, local_reports = _local(toy, monkeypatch, tmp_path, capsys)
    home = tmp_path / "home-ray"
    monkeypatch.setenv("RANKBENCH_HOME", str(home))
    code, out = toy.cli("run", "s", "--executor", "ray", capsys=capsys)
    assert code == 0, out
    assert "cells: 4 ran" in out or "cells: " in out
    local, distributed = _results(local_reports, "s"), _results(toy.reports, "s")
    assert list(local) == list(distributed) and len(local) == 4
    for name in local:
        for key in MEASURED:
            assert local[name].get(key) == distributed[name].get(key), (name, key)
    assert _runs(home) == _runs(local_home) and _runs(home)
    nodes = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
    where = [r["provenance"]["executor"] for r in distributed.values() if r["status"] == "ok"]
    assert all(w["kind"] == "ray" and w["node_id"] in nodes for w in where)
    # the report is written once, by the driver, from the results
    assert (toy.reports / "s.md").exists()
    # run again: every cell up to date, no task started for it
    code, out = toy.cli("run", "s", "--executor", "ray", capsys=capsys)
    assert code == 0 and "cells: 4 up-to-date" in out, out


def test_a_node_whose_rankbench_node_is_taken_gets_no_task(toy, ray_cluster, monkeypatch, tmp_path, capsys):
    """The resource that keeps a timed cell alone on its node: while something holds all of the
    head node's rankbench_node, every task (timed or not) of the suite runs on the other node."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from distributed.common import RESOURCE

    head = ray.get_runtime_context().get_node_id()
    nodes = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
    assert len(nodes) == 2 and head in nodes

    @ray.remote(num_cpus=0, resources={RESOURCE: 1})
    class Hold:
        def node(self):
            return ray.get_runtime_context().get_node_id()

    hold = Hold.options(scheduling_strategy=NodeAffinitySchedulingStrategy(head, soft=False)).remote()
    try:
        assert ray.get(hold.node.remote()) == head
        monkeypatch.setenv("RANKBENCH_HOME", str(tmp_path / "home"))
        assert toy.cli("run", "s", "--executor", "ray", capsys=capsys)[0] == 0
    finally:
        ray.kill(hold)
    used = {r["provenance"]["executor"]["node_id"] for r in _results(toy.reports, "s").values()
            if r["status"] == "ok"}
    assert used == nodes - {head}, used


def test_a_killed_worker_is_retried(toy, ray_cluster, monkeypatch, tmp_path, capsys):
    """The first worker to publish a cache entry is killed (SIGKILL) just before the rename; Ray
    runs its task again, the suite finishes with the local run's results, and no half-built
    entry is left in the cache."""
    local_home, local_reports = _local(toy, monkeypatch, tmp_path, capsys)
    home = tmp_path / "home-ray"
    monkeypatch.setenv("RANKBENCH_HOME", str(home))
    marker = tmp_path / "killed-once"
    monkeypatch.setenv("RANKBENCH_CRASH_AT", "before-publish:*")
    monkeypatch.setenv("RANKBENCH_CRASH_ONCE", str(marker))
    code, out = toy.cli("run", "s", "--executor", "ray", capsys=capsys)
    assert marker.exists(), "no worker was killed"
    assert code == 0, out
    local, distributed = _results(local_reports, "s"), _results(toy.reports, "s")
    for name in local:
        assert local[name]["measures"] == distributed[name]["measures"], name
    assert _runs(home) == _runs(local_home)
    leftovers = [p for p in home.rglob("*") if ".rbtmp-" in p.name]
    assert not leftovers, leftovers


def test_no_rankbench_node_is_a_clear_error(toy, monkeypatch):
    from distributed import executor
    from harness.errors import ConfigError

    monkeypatch.setattr(executor, "RESOURCE", "no-such-resource")
    with pytest.raises(ConfigError, match="ray start .*--resources"):
        executor.connect(None, log=lambda m: None)


def test_local_executor_needs_no_ray(toy, capsys):
    code, out = toy.cli("run", "s", "--address", "auto", capsys=capsys)
    assert code == 2 and "--executor ray" in out
    assert os.environ.get("RAY_ADDRESS") is None


ENCODE_CONFIG = """\
[settings]
latency_queries = 3
latency_warmup = 1

[datasets]
sample = "local:{data}"

[rankers.minilm]
kind = "bi-encoder"
model = "sentence-transformers/all-MiniLM-L6-v2"
batch_size = 16

[rankers.minilm-onnx]
kind = "onnx"
source = "minilm"
variant = "fp32"
batch_size = 16

[suites.e]
rankers = ["minilm", "minilm-onnx"]
datasets = ["sample"]
"""


@pytest.mark.models
@pytest.mark.parametrize("ranker", ["minilm", "minilm-onnx"])
def test_ray_data_encoding_is_the_one_process_encoding(ranker, ray_cluster, scifact_sample, tmp_path, monkeypatch):
    """SciFact passages (300) encoded on Ray Data by 2 actors: the entry prepare reads (a run
    after it encodes only its queries), with the same embeddings, bit for bit, as the ranker's
    own prepare in one process, and so the same run."""
    import shutil

    import numpy as np

    from distributed.encode import encode_on_ray
    from harness.config import load_config
    from harness.runner import Runner

    cfg = tmp_path / "bench.toml"
    cfg.write_text(ENCODE_CONFIG.format(data=scifact_sample))
    config = load_config(cfg)
    monkeypatch.setenv("RANKBENCH_HOME", str(tmp_path / "home"))
    runner = Runner(config, tmp_path / "reports", progress=False)
    stats = encode_on_ray(runner, ranker, "sample", actors=2, config_path=str(cfg), reports=str(tmp_path / "reports"))
    assert stats["passages"] == 300 and stats["actors"] == 2 and stats["batches"] == 300 // 16 + 1
    entries = list((tmp_path / "home" / "bi-encoder-corpus").glob("*/*/entry.json"))
    assert len(entries) == 1 and json.loads(entries[0].read_text())["encoded_on"] == "Ray Data, 2 actors"
    entry = entries[0].parent
    from_ray = np.load(entry / "embeddings.npy")
    ids = (entry / "doc_ids.txt").read_text()
    # prepare finds that entry (nothing encoded again: it is still the one Ray Data wrote)
    ds = runner.dataset("sample")
    run, _, how = runner.get_run(ranker, ds, 100, config.settings)
    assert how == "ran" and len(list((tmp_path / "home" / "bi-encoder-corpus").glob("*/*/entry.json"))) == 1
    assert json.loads(entries[0].read_text())["encoded_on"] == "Ray Data, 2 actors"
    # the same corpus encoded in one process, by the ranker's own prepare
    shutil.rmtree(entry)
    shutil.rmtree(tmp_path / "home" / "runs")
    local = Runner(config, tmp_path / "reports-local", progress=False)
    local.rankers.resolve(ranker)
    local.rankers.prepare_stage(ranker, local.dataset("sample"), reranking=False)
    meta = json.loads((entry / "entry.json").read_text())
    assert "encoded_on" not in meta
    assert np.array_equal(np.load(entry / "embeddings.npy"), from_ray)
    assert (entry / "doc_ids.txt").read_text() == ids
    local_run, _, how = local.get_run(ranker, local.dataset("sample"), 100, config.settings)
    assert how == "ran" and local_run == run


@pytest.mark.models
def test_ray_data_scores_candidate_lists_as_one_process(toy, ray_cluster, tiny_cross_encoders, monkeypatch, tmp_path):
    """A cross-encoder reranking the toy set's shipped run (6 queries x 20 candidates) on Ray Data,
    2 actors: the run its rank gives in one process, score for score."""
    from distributed.encode import score_on_ray
    from harness.config import load_config
    from harness.runner import Runner
    from harness.types import top_k

    model = tiny_cross_encoders["segment-cosine"]
    toy.config.write_text(toy.config.read_text() + f"""
[rankers.ce-first]
kind = "cross-encoder"
model = "{model}"
first_stage = "first"
depth = 20
batch_size = 8
""")
    monkeypatch.setenv("RANKBENCH_HOME", str(tmp_path / "home"))
    config = load_config(toy.config)
    runner = Runner(config, toy.reports, progress=False)
    ds = runner.dataset("toy")
    first, _, _ = runner.get_run("first", ds, 1000, config.settings)
    candidates = top_k(first, 20)
    pipe = runner.pipeline("ce-first")
    pipe.prepare(ds)
    want = pipe.rank_stage(ds.queries(), candidates, 20)
    got = score_on_ray(runner, "ce-first", "toy", ds.queries(), candidates, 20, actors=2,
                       config_path=str(toy.config), reports=str(toy.reports))
    assert got == want and sum(len(v) for v in got.values()) == 120
