"""Evaluation: ir_measures with trec_eval -c semantics, per-query values kept."""
import pytest

from conftest import DATASETS
from harness.data import DatasetSpec, LocalDataset
from harness.measures import evaluate
from harness.types import read_trec_run, top_k

DL = ["nDCG@10", "RR(rel=2)@10", "AP(rel=2)@1000", "R(rel=2)@100"]


def dl(year):
    return LocalDataset(DatasetSpec(f"dl{year}", f"local:{DATASETS / f'trec-dl-20{year}'}"), DATASETS)


@pytest.mark.parametrize("year, run, ndcg", [
    (19, "bm25", 0.5058), (20, "bm25", 0.4796), (19, "tas-b", 0.7210), (20, "splade-pp-ed", 0.7197),
    (19, "repllama", 0.7384), (20, "openai-ada2", 0.6759)])
def test_published_runs_score_their_published_ndcg(year, run, ndcg):
    ds = dl(year)
    ev = evaluate(ds.load_run(run), ds.qrels(), DL)
    assert ev.aggregate["nDCG@10"] == pytest.approx(ndcg, abs=5e-5)


def test_mean_is_over_every_judged_query_and_missing_queries_score_zero():
    ds = dl(19)
    run = ds.load_run("bm25")
    full = evaluate(run, ds.qrels(), DL)
    dropped = sorted(run)[:5]
    partial = evaluate({q: d for q, d in run.items() if q not in dropped}, ds.qrels(), DL)
    for m in DL:
        assert len(partial.per_query[m]) == 43
        assert all(partial.per_query[m][q] == 0.0 for q in dropped)
        expected = sum(v for q, v in full.per_query[m].items() if q not in dropped) / 43
        assert partial.aggregate[m] == pytest.approx(expected, abs=1e-12)
        assert full.aggregate[m] == pytest.approx(sum(full.per_query[m].values()) / 43, abs=1e-12)


def test_rel_2_counts_only_grades_2_and_3_for_binary_measures():
    qrels = {"q": {"a": 1, "b": 2}}
    run = {"q": {"a": 2.0, "b": 1.0}}       # a grade-1 doc first, the grade-2 doc second
    ev = evaluate(run, qrels, ["RR@10", "RR(rel=2)@10", "P(rel=2)@1"])
    assert ev.aggregate == {"RR@10": 1.0, "RR(rel=2)@10": 0.5, "P(rel=2)@1": 0.0}


def test_reranking_cannot_raise_recall_beyond_its_depth():
    ds = dl(20)
    run = ds.load_run("bm25")
    cut = evaluate(top_k(run, 10), ds.qrels(), ["R(rel=2)@100", "nDCG@10"])
    full = evaluate(run, ds.qrels(), ["R(rel=2)@100", "nDCG@10"])
    assert cut.aggregate["nDCG@10"] == pytest.approx(full.aggregate["nDCG@10"])
    assert cut.aggregate["R(rel=2)@100"] < full.aggregate["R(rel=2)@100"]


def test_trec_run_round_trip_keeps_scores_exactly(tmp_path):
    from harness.types import write_trec_run

    ds = dl(19)
    run = ds.load_run("tas-b")
    run["19335"]["extra"] = 1 / 3          # a score that needs all its digits
    write_trec_run(run, tmp_path / "r.trec.gz", tag="x")
    assert read_trec_run(tmp_path / "r.trec.gz") == run
