"""``backend = "onnx"`` for the sentence-transformers kinds: the model exported once (fp32) and run
by onnxruntime. Held to torch on real SciFact passages: every score within 1e-5, and the same
measures, query by query."""
from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

pytestmark = pytest.mark.models

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
TOLERANCE = 1e-5


def _config(tmp_path: Path, scifact: Path, ce_folder: Path):
    from harness.config import load_config

    path = tmp_path / "bench.toml"
    path.write_text(textwrap.dedent(f"""
        [settings]
        k = 100
        latency_queries = 0

        [datasets]
        scifact = "local:{scifact}"

        [rankers.bm25s]
        kind = "bm25"
        backend = "bm25s"

        [rankers.minilm]
        kind = "bi-encoder"
        model = "{MINILM}"

        [rankers.minilm-onnx]
        extends = "minilm"
        backend = "onnx"

        [rankers.minilm-onnx-b4]
        extends = "minilm-onnx"
        batch_size = 4

        [rankers.minilm-fp32]
        kind = "onnx"
        source = "minilm"
        variant = "fp32"

        [rankers.ce]
        kind = "cross-encoder"
        model = "{ce_folder}"
        max_length = 128
        first_stage = "bm25s"
        depth = 20

        [rankers.ce-onnx]
        extends = "ce"
        backend = "onnx"

        [suites.backends]
        rankers = ["bm25s", "minilm", "minilm-onnx", "ce", "ce-onnx"]
        datasets = ["scifact"]
        baseline = "minilm"
        """))
    return load_config(path)


@pytest.fixture(scope="module")
def runner(tmp_path_factory, scifact_sample, tiny_cross_encoders):
    from harness.runner import Runner

    tmp = tmp_path_factory.mktemp("onnx-backend")
    config = _config(tmp, scifact_sample, tiny_cross_encoders["segment-cosine"])
    return Runner(config, tmp / "reports", progress=False, threads=2, log=lambda m: None)


def test_backend_picks_the_onnx_class_and_keeps_the_kind(runner):
    from rankers.biencoder import BiEncoder
    from rankers.onnx_backend import OnnxBackendBiEncoder, OnnxBackendCrossEncoder

    torch_, onnx_ = runner.instance("minilm"), runner.instance("minilm-onnx")
    assert type(torch_) is BiEncoder and isinstance(onnx_, OnnxBackendBiEncoder)
    assert onnx_.kind == "bi-encoder" and isinstance(runner.instance("ce-onnx"), OnnxBackendCrossEncoder)
    ds = runner.dataset("scifact")
    # a backend is part of what a run and an encoded corpus are cached under
    assert runner.run_key("minilm", ds, 100) != runner.run_key("minilm-onnx", ds, 100)
    assert torch_.corpus_key(ds) != onnx_.corpus_key(ds)
    # the backend's export is the onnx kind's fp32 export of the same model: one cache entry
    assert onnx_.model_identity() == runner.instance("minilm-fp32").model_identity()


def test_bi_encoder_scores_within_tolerance_on_scifact(runner):
    ds = runner.dataset("scifact")
    queries = ds.queries()
    ids = list(ds.corpus())
    docs = ds.docs(ids)
    texts = [docs[i].joined() for i in ids]
    # batches of 64 (torch's and the backend's default) and of 4 (the quick suite's minilm-onnx)
    rankers = [runner.instance(n) for n in ("minilm", "minilm-onnx", "minilm-onnx-b4")]
    assert [r.params.batch_size for r in rankers] == [64, 64, 4]
    for r in rankers:
        r.prepare(ds, reranking=True)
    q_texts = [queries[q] for q in sorted(queries)]
    scores = []
    for r in rankers:
        q, d = r._encode(q_texts, progress=False), r._encode(texts, progress=False)
        scores.append(q @ d.T)
    # real abstracts, some past the model's 256 tokens: truncation is exercised too
    torch_ = rankers[0]
    lengths = [len(torch_.model.tokenizer(t)["input_ids"]) for t in texts]
    assert max(lengths) > torch_.model.max_seq_length
    for other in scores[1:]:
        diff = np.abs(scores[0] - other).max()
        assert other.shape == (len(q_texts), len(texts)) and diff <= TOLERANCE, diff


def test_cross_encoder_scores_within_tolerance_on_scifact(runner):
    ds = runner.dataset("scifact")
    queries = ds.queries()
    ids = list(ds.corpus())[:120]
    docs = ds.docs(ids)
    pairs = [(queries[q], docs[d].joined()) for q in sorted(queries)[:4] for d in ids]
    torch_, onnx_ = runner.instance("ce"), runner.instance("ce-onnx")
    for r in (torch_, onnx_):
        r.prepare(ds, reranking=True)
    a, b = np.asarray(torch_.score(pairs)), np.asarray(onnx_.score(pairs))
    assert a.shape == (len(pairs),) and np.abs(a - b).max() <= TOLERANCE, np.abs(a - b).max()


def test_same_measures_query_by_query(runner):
    outcomes = runner.run_suite("backends")
    assert [o.status for o in outcomes] == ["ran"] * 5, outcomes
    from harness.results import read_result, result_path

    def measures(ranker):
        return read_result(result_path(runner.reports, "backends", ranker, "scifact"))["measures"]

    for torch_name, onnx_name in (("minilm", "minilm-onnx"), ("ce", "ce-onnx")):
        a, b = measures(torch_name), measures(onnx_name)
        assert a["aggregate"] == b["aggregate"], (torch_name, a["aggregate"], b["aggregate"])
        assert a["per_query"] == b["per_query"]
    # the exported model is reported, not torch's
    eff = read_result(result_path(runner.reports, "backends", "minilm-onnx", "scifact"))["efficiency"]
    assert eff["dtype"] == "float32" and eff["model_bytes"] > 80e6 and eff["index_bytes"] > 0


def test_prepare_loads_what_ranking_needs(runner, monkeypatch):
    """The tokenizer is loaded in prepare, with the session: the first rank call (QPS, latency)
    loads nothing. It once loaded there, importing transformers' AutoTokenizer and torch with it
    (2.3 s inside a cell's timed rank call)."""
    from harness.runner import Runner
    from rankers import onnx_forward

    fresh = Runner(runner.config, runner.reports, progress=False, threads=2, log=lambda m: None)
    ds = fresh.dataset("scifact")
    queries = dict(sorted(ds.queries().items())[:3])
    ids = list(ds.corpus())[:10]
    candidates = {q: {d: 0.0 for d in ids} for q in queries}
    onnx_forward._tokenizer.cache_clear()
    rankers = [fresh.instance(n) for n in ("minilm-onnx", "ce-onnx")]
    for r in rankers:
        r.prepare(ds, reranking=True)

    def refuse(path):
        raise AssertionError(f"tokenizer {path} loaded while ranking")

    monkeypatch.setattr(onnx_forward, "load_tokenizer", refuse)
    for r in rankers:
        run = r.rank(queries, candidates, 5)
        assert set(run) == set(queries) and all(len(v) == 5 for v in run.values())


def test_an_onnx_cell_process_never_imports_torch(runner, tmp_path):
    """A cell of the onnx backend, made in its own process as ``rankbench run`` makes it, loads
    onnxruntime and the exported model's tokenizer, not torch: its peak memory is onnxruntime's
    (torch's few hundred MiB are not in it) and its start is not torch's import. The torch twin's
    process, measured the same way, does load torch: the record can tell."""
    from harness.isolation import measure_in_child
    from harness.results import read_result, result_path
    from harness.runner import Runner

    runner.run_suite("backends")        # every export and encoded corpus built (cached: no rerun)
    own = Runner(runner.config, tmp_path / "reports", cache=runner.cache, progress=False, force=True,
                 threads=2, log=lambda m: None, isolate=measure_in_child)
    suite = runner.config.suite("backends")
    loaded = {}
    for name in ("minilm", "minilm-onnx", "ce-onnx"):
        assert own.run_cell(suite, name, "scifact").status == "ran", name
        eff = read_result(result_path(own.reports, "backends", name, "scifact"))["efficiency"]
        assert eff["process"]["own"] is True and eff["memory_method"] == "VmHWM of the cell's own process"
        loaded[name] = eff["process"]["loaded"]
        # the same run as the suite's own process made
        a = read_result(result_path(own.reports, "backends", name, "scifact"))["measures"]
        assert a == read_result(result_path(runner.reports, "backends", name, "scifact"))["measures"], name
    assert "torch" in loaded["minilm"], loaded
    for name in ("minilm-onnx", "ce-onnx"):
        assert "onnxruntime" in loaded[name] and "transformers" in loaded[name], loaded
        assert "torch" not in loaded[name] and "sentence_transformers" not in loaded[name], loaded
