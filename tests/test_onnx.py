"""ONNX rankers: export parity with torch, INT8 ranking agreement on real DL 2019 pairs, sizes,
and the configuration errors a user can make."""
from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest

from conftest import DATASETS

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

pytestmark = pytest.mark.models

MINILM = "sentence-transformers/all-MiniLM-L6-v2"


def _config(tmp_path: Path, ce_folder: Path, extra: str = ""):
    from harness.config import load_config

    text = textwrap.dedent(f"""
        [datasets]
        dl19 = "local:{DATASETS / 'trec-dl-2019'}"
        scifact = "local:{DATASETS / 'beir' / 'scifact'}"

        [datasets.scifact-train]
        source = "local:{DATASETS / 'beir' / 'scifact'}"
        split = "train"

        [rankers.bm25-run]
        kind = "run"
        run = "bm25"

        [rankers.ce]
        kind = "cross-encoder"
        model = "{ce_folder}"
        max_length = 128
        first_stage = "bm25-run"
        depth = 20

        [rankers.ce-fp32]
        kind = "onnx"
        source = "ce"
        variant = "fp32"
        first_stage = "bm25-run"
        depth = 20

        [rankers.ce-int8]
        extends = "ce-fp32"
        variant = "int8-dynamic"

        [rankers.ce-int8-static]
        extends = "ce-fp32"
        variant = "int8-static"
        calibration = "scifact-train"
        calibration_queries = 24

        [rankers.minilm]
        kind = "bi-encoder"
        model = "{MINILM}"

        [rankers.minilm-fp32]
        kind = "onnx"
        source = "minilm"
        variant = "fp32"

        [rankers.minilm-int8]
        extends = "minilm-fp32"
        variant = "int8-dynamic"

        [suites.parity]
        rankers = ["bm25-run", "ce", "ce-fp32", "ce-int8", "ce-int8-static"]
        datasets = ["dl19"]

        [suites.parity.variants]
        ce-fp32 = "ce"
        """) + textwrap.dedent(extra)
    path = tmp_path / "bench.toml"
    path.write_text(text)
    return load_config(path)


@pytest.fixture(scope="module")
def runner(tmp_path_factory, tiny_cross_encoders):
    from harness.runner import Runner

    tmp = tmp_path_factory.mktemp("onnx")
    config = _config(tmp, tiny_cross_encoders["segment-cosine"])
    return Runner(config, tmp / "reports", progress=False, threads=2, log=lambda m: None)


@pytest.fixture(scope="module")
def dl19(runner):
    """A real DL 2019 sample: 8 judged queries, each with BM25's top 25 passages."""
    ds = runner.dataset("dl19")
    queries, run = ds.queries(), ds.load_run("bm25")
    qids = sorted(ds.qrels())[:8]
    groups = []
    for q in qids:
        ids = sorted(run[q], key=lambda d: -run[q][d])[:25]
        docs = ds.docs(ids)
        groups.append([(queries[q], docs[d].joined()) for d in ids])
    return ds, groups


def _scores(ranker, ds, groups):
    ranker.prepare(ds, reranking=True)
    pairs = [p for g in groups for p in g]
    return np.asarray(ranker.score(pairs) if hasattr(ranker, "score") else ranker.inner.score(pairs))


def _per_query(a, b, groups, stat):
    out, i = [], 0
    for g in groups:
        out.append(stat(a[i:i + len(g)], b[i:i + len(g)])[0])
        i += len(g)
    return np.array(out)


def test_fp32_export_scores_equal_torch(runner, dl19):
    ds, groups = dl19
    torch_scores = _scores(runner.instance("ce"), ds, groups)
    onnx_scores = _scores(runner.instance("ce-fp32"), ds, groups)
    assert np.std(torch_scores) > 0.1                      # a real spread of scores, not a constant
    assert np.abs(onnx_scores - torch_scores).max() <= 1e-4, np.abs(onnx_scores - torch_scores).max()


def test_int8_variants_keep_each_querys_ranking(runner, dl19):
    """Spearman's rho between the INT8 model's and torch's scores of each query's 25 candidates.
    (Kendall's tau, stricter on near-ties, is printed beside it.)"""
    from scipy.stats import kendalltau, spearmanr

    ds, groups = dl19
    ref = _scores(runner.instance("ce"), ds, groups)
    for name in ("ce-int8", "ce-int8-static"):
        got = _scores(runner.instance(name), ds, groups)
        rho = _per_query(got, ref, groups, spearmanr)
        tau = _per_query(got, ref, groups, kendalltau)
        print(f"{name}: Spearman min {rho.min():.4f} mean {rho.mean():.4f}; Kendall min {tau.min():.4f} "
              f"mean {tau.mean():.4f}")
        assert rho.mean() >= 0.98, (name, rho)
        assert np.abs(got - ref).max() > 0                 # it really is another model


def test_int8_is_a_quarter_of_fp32_on_disk(runner):
    from harness.files import tree_bytes

    fp32 = runner.instance("ce-fp32").export()[0]
    int8 = runner.instance("ce-int8").export()[0]
    assert tree_bytes(int8) <= 0.30 * tree_bytes(fp32), (tree_bytes(int8), tree_bytes(fp32))
    info = runner.instance("ce-int8").info()
    assert info["variant"] == "int8-dynamic" and info["kind"] == "cross-encoder"
    # the export is cached by content: asking again builds nothing
    again, entry = runner.instance("ce-int8").export()
    assert again == int8 and entry["build_seconds"] > 0


def test_embedding_rows_hold_each_tokens_own_scale(runner, dl19):
    """Per-row int8 embedding tables: every weight within half of its row's step, a finer fit than
    onnxruntime's one scale for the whole table, and the rewritten graph scores like the float one."""
    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper
    from scipy.stats import spearmanr

    from rankers.onnx_export import quantize_embedding_rows

    folder, _ = runner.instance("ce-fp32").export()
    model = onnx.load(str(folder / "model.onnx"))
    tables = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    rewritten = quantize_embedding_rows(model)
    word = next(n for n in rewritten if "word_embeddings" in n)
    assert len(rewritten) >= 2                                 # word and position tables at least
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    q, scale, w = inits[f"{word}.int8"], inits[f"{word}.row_scale"], tables[word]
    assert q.dtype == np.int8 and q.shape == w.shape and scale.shape == (w.shape[0], 1)
    err = np.abs(q * scale - w)
    assert (err <= scale / 2 + 1e-7).all()
    per_tensor_step = (w.max() - w.min()) / 255                # onnxruntime's uint8 range for a Gather table
    assert err.mean() < per_tensor_step / 4, (err.mean(), per_tensor_step)
    assert not any(name in inits for name in rewritten)        # the float tables are gone

    ds, groups = dl19
    pairs = [p for g in groups for p in g]
    ref = _scores(runner.instance("ce-fp32"), ds, groups)
    from rankers.onnx_forward import _run
    from rankers.pairs import PairBatches

    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    got = _run(session, PairBatches(runner.instance("ce-fp32").tokenizer(), pairs, 128, 32), len(pairs))[:, 0]
    assert np.abs(got - ref).max() > 0
    assert _per_query(got, ref, groups, spearmanr).min() >= 0.99


def test_embedding_rows_rewrite_a_shared_table_once():
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from rankers.onnx_export import quantize_embedding_rows

    rng = np.random.default_rng(0)
    table = (rng.standard_normal((50, 8)) * np.linspace(0.01, 3, 50)[:, None]).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Gather", ["table", "a"], ["ea"], name="ga"),
         helper.make_node("Gather", ["table", "b"], ["eb"], name="gb"),
         helper.make_node("Add", ["ea", "eb"], ["out"], name="add")],
        "shared", [helper.make_tensor_value_info(n, TensorProto.INT64, [None]) for n in ("a", "b")],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [None, 8])], [numpy_helper.from_array(table, "table")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    assert quantize_embedding_rows(model) == ["table"]
    onnx.checker.check_model(model)
    assert [i.name for i in model.graph.initializer] == ["table.int8", "table.row_scale"]
    a, b = np.array([0, 7, 49]), np.array([3, 3, 20])
    got = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"a": a, "b": b})[0]
    step = np.abs(table).max(1) / 127
    assert np.abs(got - (table[a] + table[b])).max() <= (step[a] + step[b]).max() / 2 + 1e-6


def test_onnx_bi_encoder_embeds_like_torch(runner, dl19):
    ds, groups = dl19
    texts = [q for q, _ in groups[0][:1]] + [d for _, d in groups[0]]
    torch_ranker = runner.instance("minilm")
    torch_ranker.dataset = ds
    ref = torch_ranker._encode(texts, progress=False)
    onnx_ranker = runner.instance("minilm-fp32")
    onnx_ranker.prepare(ds, reranking=True)
    got = onnx_ranker.inner._encode(texts, progress=False)
    assert got.shape == ref.shape and np.abs(got - ref).max() <= 1e-4, np.abs(got - ref).max()
    int8 = runner.instance("minilm-int8")
    int8.prepare(ds, reranking=True)
    q8 = int8.inner._encode(texts, progress=False)
    cos = (q8 * ref).sum(1)
    assert cos.min() >= 0.98, cos.min()


def test_onnx_ranker_reranks_through_the_harness(runner):
    """The whole chain: a suite cell of the INT8 ranker, evaluated, with its footprint."""
    outcomes = runner.run_suite("parity", ["ce-fp32", "ce"], None)
    assert all(o.status == "ran" for o in outcomes), outcomes
    import json

    from harness.results import result_path

    res = {r: json.loads(result_path(runner.reports, "parity", r, "dl19").read_text()) for r in ("ce", "ce-fp32")}
    a, b = (res[r]["measures"]["aggregate"]["nDCG@10"] for r in ("ce", "ce-fp32"))
    assert a == pytest.approx(b, abs=1e-4)
    eff = res["ce-fp32"]["efficiency"]
    assert eff["pairs_per_s"] > 0 and eff["model_bytes"] > 1e6 and eff["dtype"] == "float32"
    # the report sets the variant beside its source: share kept, speed-up, size
    from harness.report import build_report

    text = build_report(runner.config, runner.reports, "parity")
    assert "## Exported and quantized variants" in text
    row = next(line for line in text.splitlines() if line.startswith("| ce-fp32 | ce | dl19 |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[6] == "100.0%" and cells[9].endswith("x")
    assert 90 <= int(cells[12].rstrip("%")) <= 110           # fp32 ONNX: the same bytes as the safetensors, give or take
    assert cells[-1] == "yes" or cells[-1].startswith("no: ") and "too slow" in cells[-1]


@pytest.mark.parametrize("extra, message", [
    ('[rankers.bad]\nkind = "onnx"\nsource = "bm25-run"\n', "onnx exports one of cross-encoder, bi-encoder"),
    ('[rankers.bad]\nkind = "onnx"\nsource = "ce"\nvariant = "fp16"\n', "fp16"),
    ('[rankers.bad]\nkind = "onnx"\nsource = "nope"\n', "nope"),
    ('[rankers.bad]\nkind = "onnx"\nsource = "ce"\ncalibration = "scifact-train"\n', "only applies to"),
    ('[rankers.bad]\nkind = "onnx"\n', "needs source"),
])
def test_config_errors_say_what_and_where(tmp_path, tiny_cross_encoders, extra, message):
    from harness.errors import ConfigError

    with pytest.raises(ConfigError, match=message) as e:
        _config(tmp_path, tiny_cross_encoders["segment-cosine"], extra)
    assert "[rankers.bad]" in str(e.value)


def test_static_int8_refuses_evaluation_data_and_untrained_sources(tmp_path, tiny_cross_encoders):
    from harness.errors import ConfigError
    from harness.runner import Runner

    config = _config(tmp_path, tiny_cross_encoders["segment-cosine"], """
        [rankers.leaky]
        kind = "onnx"
        source = "ce"
        variant = "int8-static"
        calibration = "scifact"

        [rankers.uncalibrated]
        kind = "onnx"
        source = "ce"
        variant = "int8-static"

        [suites.leak]
        rankers = ["leaky"]
        datasets = ["scifact"]
        """)
    runner = Runner(config, tmp_path / "reports", progress=False, log=lambda m: None)
    with pytest.raises(ConfigError, match="calibration dataset scifact is evaluated by suite leak"):
        runner.instance("leaky").export()
    with pytest.raises(ConfigError, match="not trained here: set calibration"):
        runner.instance("uncalibrated").export()
