"""The hot path of every ranker kind, on fixed real inputs (see conftest.py). Each benchmark
asserts what it computed, so a broken path fails instead of timing nothing."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import PAIRS, PASSAGES, QUERIES


def _prepared(runner, name: str, dataset: str, reranking: bool):
    inst = runner.instance(name)
    inst.prepare(runner.dataset(dataset), reranking=reranking)
    return inst


@pytest.mark.parametrize("which", ["dl19", "scifact"])
def test_tokenize_pairs(benchmark, runner, pairs, long_pairs, which):
    """Tokenizing, length-sorting and padding pairs (shared by the torch and ONNX cross-encoders):
    DL 2019 passages (short) and SciFact abstracts (long: most are cut at 128 tokens)."""
    from rankers.pairs import PairBatches

    tok = runner.instance("ce").model.tokenizer
    chosen = pairs if which == "dl19" else long_pairs
    batches = benchmark(lambda: list(PairBatches(tok, chosen, 128, 32)))
    assert sum(len(idx) for idx, _ in batches) == PAIRS
    assert all(feats["input_ids"].shape[1] <= 128 for _, feats in batches)


@pytest.mark.parametrize("ranker", ["ce", "ce-onnx-fp32", "ce-onnx-int8"])
def test_cross_encoder_scores_pairs(benchmark, runner, pairs, ranker):
    inst = _prepared(runner, ranker, "dl19", reranking=True)
    scorer = inst.inner if hasattr(inst, "inner") else inst
    scorer.score(pairs[:32])                                     # warm-up outside the timing
    scores = benchmark(scorer.score, pairs)
    assert scores.shape == (PAIRS,) and np.isfinite(scores).all() and np.ptp(scores) > 0


@pytest.mark.parametrize("ranker", ["minilm", "minilm-onnx-fp32", "minilm-onnx-int8"])
def test_bi_encoder_encodes_passages(benchmark, runner, passages, ranker):
    inst = runner.instance(ranker)
    encoder = inst.inner if hasattr(inst, "inner") else inst
    encoder._encode(passages[:16], False)                        # warm-up outside the timing
    emb = benchmark(encoder._encode, passages, False)
    assert emb.shape == (PASSAGES, 384)
    assert np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-3)


@pytest.mark.parametrize("ranker", ["bm25", "bm25s"])
def test_bm25_query_batch(benchmark, runner, scifact_queries, ranker):
    inst = _prepared(runner, ranker, "scifact", reranking=False)
    run = benchmark(inst.rank, scifact_queries, None, 100)
    assert len(run) == QUERIES and all(len(v) == 100 for v in run.values())


def test_evaluate_a_run(benchmark, runner):
    """ir_measures over a published DL 2019 run: what every cell and report pays."""
    from harness.measures import evaluate

    ds = runner.dataset("dl19")
    run, qrels = ds.load_run("bm25"), ds.qrels()
    result = benchmark(evaluate, run, qrels, ["nDCG@10", "RR(rel=2)@10", "AP(rel=2)@1000", "R(rel=2)@100"])
    assert result.aggregate["nDCG@10"] == pytest.approx(0.5058, abs=1e-4)
