"""Calibration: the four calibrators fitted on real judged pairs (BM25's ranking of a SciFact
slice), strictly increasing so that no ranking and no nDCG@10 changes, better calibrated than the
fixed sigmoid on held-out pairs, the sample-size and held-out guards, thresholds for a target
precision, and the pairs cached by content."""
from __future__ import annotations

import numpy as np
import pytest

from harness.cache import Cache
from harness.calibration import METHODS, Calibrator, check_sample, fit, measures, threshold_for_precision
from harness.config import load_config
from harness.errors import ConfigError, DataError
from harness.measures import evaluate
from harness.runner import Runner
from rag.calibrate import calibrators, check_held_out, collect_pairs, pairs

CONFIG = """
[settings]
k = 50
latency_queries = 0

[datasets]
sample = "local:{sample}"
other = "local:{other}"

[rankers.bm25s]
kind = "bm25"
backend = "bm25s"

[rankers.minilm-rerank]
kind = "bi-encoder"
max_length = 128
first_stage = "bm25s"
depth = 30
"""


@pytest.fixture(scope="module")
def runner(scifact_sample, rankbench_home, tmp_path_factory):
    from conftest import DATASETS, judged_slice, write_beir

    # another real slice of SciFact: the next 60 judged queries, for held-out pairs
    qrels, queries, relevant, others = judged_slice(DATASETS / "beir" / "scifact", 90)
    ids = sorted(qrels, key=int)[30:]
    qrels = {q: qrels[q] for q in ids}
    wanted = {d for q in ids for d in qrels[q]}
    other = write_beir(tmp_path_factory.mktemp("other") / "scifact-other",
                       [d for d in relevant if d["_id"] in wanted] + others[:300],
                       [q for q in queries if q["_id"] in qrels], qrels,
                       meta='name = "SciFact other"\nconventions = "beir"\n')
    path = tmp_path_factory.mktemp("cal") / "bench.toml"
    path.write_text(CONFIG.format(sample=scifact_sample, other=other))
    return Runner(load_config(path), path.parent / "reports", cache=Cache(rankbench_home), progress=False,
                  log=lambda m: None)


@pytest.fixture(scope="module")
def fitted(runner):
    got, p = calibrators(runner, "bm25s", "sample")
    return got, p


def test_pairs_are_the_runs_judged_labels(runner):
    p = collect_pairs(runner, "bm25s", "sample")
    ds = runner.dataset("sample")
    qrels = ds.qrels()
    assert p.queries == len(qrels) and p.scores.size == len(p.qids) == p.labels.size
    assert 0 < p.positives < p.scores.size
    # each label is the qrels' judgment of that pair (self-hits dropped, as BEIR evaluates)
    run = runner.get_run("bm25s", ds, 50, runner.config.settings)[0]
    q = p.qids[0]
    docs = [d for d in run[q] if d != q]
    assert list(p.labels[: len(docs)]) == [1.0 if qrels[q].get(d, 0) >= 1 else 0.0 for d in docs]
    sub = collect_pairs(runner, "bm25s", "sample", max_queries=10)
    assert sub.queries == 10 and len(set(sub.qids)) <= 10
    assert sub.qids == collect_pairs(runner, "bm25s", "sample", max_queries=10).qids     # seeded


def test_every_calibrator_is_strictly_increasing_and_keeps_ndcg(runner, fitted):
    got, p = fitted
    ds = runner.dataset("sample")
    run = runner.get_run("bm25s", ds, 50, runner.config.settings)[0]
    base = evaluate(run, ds.qrels(), ["nDCG@10", "RR@10"]).per_query
    grid = np.linspace(p.scores.min() - 5, p.scores.max() + 5, 2000)
    for m, cal in got.items():
        # the fixed sigmoid rounds to 1.0 above a raw score of about 37 (BM25's reach that): it
        # is strict below; fitted calibrators are strict over the whole range of these scores
        g = grid[grid < 30] if m == "identity" else grid
        out = cal.transform(g)
        assert np.all(np.diff(out) > 0), m           # strictly: no two scores tie after calibration
        assert np.all((out > 0) & (out < 1)), m
        if m != "identity":
            mapped = {q: {d: cal(s) for d, s in docs.items()} for q, docs in run.items()}
            assert evaluate(mapped, ds.qrels(), ["nDCG@10", "RR@10"]).per_query == base, m


def test_fitted_calibrators_beat_the_fixed_sigmoid_on_held_out_pairs(runner, fitted):
    got, _ = fitted
    assert check_held_out(runner, "sample", "other") == frozenset()
    test = collect_pairs(runner, "bm25s", "other")
    before = measures(got["identity"].transform(test.scores), test.labels)
    for m in ("temperature", "platt", "isotonic"):
        after = measures(got[m].transform(test.scores), test.labels)
        # temperature has no bias term: BM25's scores are all positive, so it cannot go below 0.5
        assert after["ece_width"] < before["ece_width"] / (1.5 if m == "temperature" else 5), (m, after, before)
        assert after["brier"] < before["brier"] and after["nll"] < before["nll"]
    assert 0 <= before["ece_mass"] <= 1 and before["mce"] >= before["ece_width"]
    assert got["platt"].params["a"] > 0 and got["temperature"].params["t"] > 0
    assert "isotonic regression tends to overfit" in " ".join(got["isotonic"].notes) or got["isotonic"].n >= 1000


def test_a_threshold_for_a_target_precision(fitted):
    got, p = fitted
    probs = got["platt"].transform(p.scores)
    t = threshold_for_precision(probs, p.labels, 0.5)
    kept = probs >= t["threshold"]
    assert t["precision"] >= 0.5 and p.labels[kept].mean() == pytest.approx(t["precision"])
    assert t["kept"] == int(kept.sum()) and 0 < t["recall"] <= 1
    below = probs[probs < t["threshold"]]
    if below.size:                    # the lowest such threshold: one step lower misses the target
        assert p.labels[probs >= below.max()].mean() < 0.5
    none = threshold_for_precision(probs, np.zeros_like(p.labels), 0.5)
    assert none["threshold"] is None and none["kept"] == 0
    with pytest.raises(ConfigError, match="target precision"):
        threshold_for_precision(probs, p.labels, 1.5)


def test_the_sample_size_guard_and_bad_pairs(fitted):
    _, p = fitted
    with pytest.raises(DataError, match="at least 200"):
        fit("platt", p.scores[:50], p.labels[:50])
    with pytest.raises(DataError, match="relevant and"):
        check_sample(p.scores, np.zeros_like(p.labels))
    with pytest.raises(DataError, match="not finite"):
        fit("platt", np.r_[p.scores, np.nan], np.r_[p.labels, 0])
    with pytest.raises(DataError, match="not more often relevant"):
        fit("platt", -p.scores, p.labels)                  # a reversed score cannot keep the ranking
    with pytest.raises(ConfigError, match="choose one of"):
        fit("minmax", p.scores, p.labels)


def test_the_held_out_guard(runner, tmp_path):
    with pytest.raises(ConfigError, match="same data"):
        check_held_out(runner, "sample", "sample")
    # NFCorpus's dev and test splits share a query text: the test pairs leave that query out
    from conftest import ROOT

    real = Runner(load_config(ROOT / "bench.toml"), tmp_path, cache=runner.cache, progress=False, log=lambda m: None)
    shared = check_held_out(real, "nfcorpus-dev", "nfcorpus")
    test_q = real.dataset("nfcorpus").queries()
    assert shared and {test_q[q].lower() for q in shared} >= {"are avocados good for you?"}
    assert len(shared) < 5


def test_pairs_are_cached_and_calibrators_round_trip(runner, fitted):
    got, p = fitted
    again = pairs(runner, "bm25s", "sample")
    assert again.qids == p.qids and np.array_equal(again.scores, p.scores)
    for m in METHODS:
        back = Calibrator.from_json(got[m].as_json())
        assert np.array_equal(back.transform(p.scores), got[m].transform(p.scores))
    with pytest.raises(DataError, match="malformed"):
        Calibrator.from_json({"params": {}})


@pytest.mark.models
def test_a_neural_rankers_calibrated_scores_keep_every_ranking(runner):
    """MiniLM reranking BM25 on one SciFact slice, calibrated on it, measured on another: every
    fitted calibrator leaves nDCG@10 of each held-out query as it was, and improves ECE."""
    got, _ = calibrators(runner, "minilm-rerank", "sample")
    ds = runner.dataset("other")
    run = runner.get_run("minilm-rerank", ds, 50, runner.config.settings)[0]
    base = evaluate(run, ds.qrels(), ["nDCG@10"]).per_query
    test = collect_pairs(runner, "minilm-rerank", "other")
    before = measures(got["identity"].transform(test.scores), test.labels)["ece_width"]
    for m in ("temperature", "platt", "isotonic"):
        cal = got[m]
        mapped = {q: {d: cal(s) for d, s in docs.items()} for q, docs in run.items()}
        assert evaluate(mapped, ds.qrels(), ["nDCG@10"]).per_query == base, m
    assert measures(got["platt"].transform(test.scores), test.labels)["ece_width"] < before / 3


@pytest.mark.models
def test_a_cross_encoders_calibrated_scores_keep_every_ranking(runner, tiny_cross_encoders, tmp_path):
    """The same for a cross-encoder (logits, not cosines: another scale): a 2-layer MiniLM
    cross-encoder reranking BM25, calibrated on one SciFact slice, ranks the other as before."""
    path = tmp_path / "bench.toml"
    text = runner.config.path.read_text() + f"""
[rankers.ce-rerank]
kind = "cross-encoder"
model = "{tiny_cross_encoders['segment-cosine']}"
max_length = 128
first_stage = "bm25s"
depth = 30
"""
    path.write_text(text)
    ce = Runner(load_config(path), tmp_path / "reports", cache=runner.cache, progress=False, log=lambda m: None)
    got, _ = calibrators(ce, "ce-rerank", "sample")
    ds = ce.dataset("other")
    run = ce.get_run("ce-rerank", ds, 50, ce.config.settings)[0]
    base = evaluate(run, ds.qrels(), ["nDCG@10"]).per_query
    test = collect_pairs(ce, "ce-rerank", "other")
    before = measures(got["identity"].transform(test.scores), test.labels)["ece_width"]
    order = {q: sorted(docs, key=lambda d: (-docs[d], d)) for q, docs in run.items()}
    for m in ("temperature", "platt", "isotonic"):
        cal = got[m]
        mapped = {q: {d: cal(s) for d, s in docs.items()} for q, docs in run.items()}
        assert {q: sorted(docs, key=lambda d: (-docs[d], d)) for q, docs in mapped.items()} == order, m
        # nDCG@10 of the calibrated ranking. Not of the calibrated scores as trec_eval reads them:
        # it holds scores as 32-bit floats, and a temperature this large (all logits positive)
        # squeezes them into 0.502-0.504, where neighbours 2e-8 apart tie. So rankbench orders by
        # the raw score and presents the calibrated one (serve, rag).
        by_rank = {q: {d: float(-r) for r, d in enumerate(sorted(docs, key=lambda d: (-docs[d], d)))}
                   for q, docs in mapped.items()}
        assert evaluate(by_rank, ds.qrels(), ["nDCG@10"]).per_query == base, m
    assert measures(got["platt"].transform(test.scores), test.labels)["ece_width"] < before
