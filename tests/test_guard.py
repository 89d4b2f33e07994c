"""The one leakage guard (training.guard), asked the three questions its callers ask, on the real
bench.toml: may a recipe train on this split, may a model calibrate on this dataset, may a ranker
be compared on this dataset."""
from __future__ import annotations

from conftest import ROOT
from harness.config import load_config
from harness.runner import Runner


def _guard(tmp_path):
    runner = Runner(load_config(ROOT / "bench.toml"), tmp_path, progress=False, log=lambda m: None)
    return runner.models.guard


def test_a_split_a_suite_evaluates_may_not_be_learnt_from(tmp_path):
    guard = _guard(tmp_path)
    users = guard.users_of_recipe("ci-tiny")
    assert "ci-tiny" in users
    suite, dataset = guard.evaluated_twin("scifact", users)
    assert dataset == "scifact" and "ci-tiny" in guard.runner.config.suite(suite).rankers
    assert guard.evaluated_twin("scifact-train", users) is None      # what it does train on
    assert guard.evaluated_twin("scifact", {"bm25"}) is not None        # the beir and quick suites


def test_what_training_must_not_see_holds_every_evaluated_query(tmp_path):
    guard = _guard(tmp_path)
    ids, texts, names = guard.held_out(guard.users_of_recipe("ci-tiny"))
    scifact = guard.runner.dataset("scifact")
    assert "scifact" in names
    assert set(scifact.queries()) <= ids[scifact.corpus_fingerprint()]
    assert len(texts) >= len(set(" ".join(t.split()).casefold() for t in scifact.queries().values()))


def test_a_model_is_not_compared_on_what_it_learnt_from(tmp_path):
    guard = _guard(tmp_path)
    assert guard.learnt_twin("ci-tiny", "scifact-train") == ("ci-tiny", "scifact-train")
    assert guard.learnt_twin("ci-tiny", "scifact") is None
    assert guard.learnt_twin("bm25", "scifact-train") is None            # nothing trained here
