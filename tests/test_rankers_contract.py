"""The contract every ranker kind must pass, on real data.

Shape (query id -> doc id -> finite float, at most k docs, only asked queries, only corpus docs),
only candidates when reranking, determinism, a query's ranking independent of its batch, empty
inputs. A new kind in the registry fails test_every_kind_has_a_contract_case until it has one.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from conftest import DATASETS
from harness.cache import Cache
from harness.data import DatasetSpec, LocalDataset
from harness.params import build_params
from rankers import KINDS, load_kind
from rankers.base import Context, PairScorer

# kind -> list of (case id, params, dataset key, reranking)
CASES = {
    "bm25": [("pyserini", {"backend": "pyserini"}, "sample", False),
             ("bm25s", {"backend": "bm25s"}, "sample", False),
             ("bm25s-rerank", {"backend": "bm25s"}, "sample", True)],
    "bi-encoder": [("exact", {"max_length": 128}, "sample", False),
                   ("hnsw", {"max_length": 128, "index": "hnsw"}, "sample", False),
                   ("rerank", {"max_length": 64}, "sample", True)],
    "run": [("published", {"run": "bm25"}, "dl19", False)],
    "oracle": [("retrieve", {}, "sample", False), ("rerank", {}, "sample", True)],
    "random": [("retrieve", {}, "sample", False), ("rerank", {"seed": 3}, "dl19", True)],
    # "@head": a 2-layer cross-encoder built from all-MiniLM-L6-v2 with that score head (conftest)
    "cross-encoder": [("segment-cosine", {"model": "@segment-cosine", "max_length": 96}, "dl19", True),
                      ("classifier", {"model": "@classifier", "max_length": 64, "batch_size": 5}, "sample", True)],
    # members are rankers of a config: an oracle and a random reranker (see make)
    "fusion": [("zscore", {"normalize": "zscore"}, "sample", True), ("rrf", {"normalize": "rrf"}, "dl19", True)],
    # "@source": the ranker of the config whose model is exported (see make)
    "onnx": [("cross-encoder-int8", {"variant": "int8-dynamic", "@source": {"kind": "cross-encoder",
              "model": "@segment-cosine", "max_length": 96}}, "dl19", True),
             ("bi-encoder-fp32", {"variant": "fp32", "@source": {"kind": "bi-encoder", "max_length": 128}},
              "sample", False)],
}


def test_every_kind_has_a_contract_case():
    assert set(CASES) == set(KINDS)


@pytest.fixture(scope="module")
def datasets(scifact_sample):
    return {
        "sample": LocalDataset(DatasetSpec("sample", f"local:{scifact_sample}"), Path("/")),
        "dl19": LocalDataset(DatasetSpec("dl19", f"local:{DATASETS / 'trec-dl-2019'}"), Path("/")),
    }


def make(kind, params, dataset, reranking, rankbench_home, models=None):
    if str(params.get("model", "")).startswith("@"):
        params = {**params, "model": str(models[params["model"][1:]])}
    cls = load_kind(kind)
    ctx = Context(cache=Cache(rankbench_home), progress=False)
    if "@source" in params:    # an onnx ranker reaches its source through the runner of a config
        from harness.config import parse_config
        from harness.runner import Runner

        source = dict(params["@source"])
        if str(source.get("model", "")).startswith("@"):
            source["model"] = str(models[source["model"][1:]])
        params = {k: v for k, v in params.items() if k != "@source"} | {"source": "src"}
        config = parse_config({"rankers": {"src": source, "x": {"kind": kind, **params}}},
                              rankbench_home / "contract.toml")
        ctx = Runner(config, rankbench_home / "contract-reports", cache=Cache(rankbench_home), progress=False,
                     log=lambda m: None).ctx
    if kind == "fusion":       # a fusion reaches its members through the runner of a config
        from harness.config import parse_config
        from harness.runner import Runner

        config = parse_config({"rankers": {"orc": {"kind": "oracle"}, "rnd": {"kind": "random", "seed": 1},
                                           "f": {"kind": "fusion", "members": {"orc": 1.0, "rnd": 0.5}, **params}}},
                              rankbench_home / "contract.toml")
        ctx = Runner(config, rankbench_home / "contract-reports", cache=Cache(rankbench_home), progress=False).ctx
        params = {"members": {"orc": 1.0, "rnd": 0.5}, **params}
    ranker = cls(f"test-{kind}", build_params(cls.Params, params, "test"), ctx)
    assert ranker.applies_to(dataset, reranking) is None
    ranker.prepare(dataset, reranking=reranking)
    return ranker


def candidates_for(dataset, queries):
    """Real candidates: the shipped BM25 run on DL19; on the sample, 20 docs per query."""
    if dataset.run_names():
        run = dataset.load_run("bm25")
        return {q: dict(list(run[q].items())[:30]) for q in queries}
    ids = sorted(dataset.corpus())
    out = {}
    for i, q in enumerate(queries):
        chosen = set(dataset.qrels()[q]) | {ids[(i * 7 + j * 13) % len(ids)] for j in range(20)}
        out[q] = {d: 0.0 for d in sorted(chosen)}
    return out


def _tier(kind: str, case: str) -> list:
    """The test tier a case belongs to (conftest.TIERS): the model kinds load torch, Lucene the JVM."""
    if kind in ("bi-encoder", "cross-encoder", "onnx"):
        return [pytest.mark.models]
    return [pytest.mark.jvm] if (kind, case) == ("bm25", "pyserini") else []


CASE_IDS = [pytest.param(kind, *case, marks=_tier(kind, case[0]), id=f"{kind}-{case[0]}")
            for kind, cases in CASES.items() for case in cases]


@pytest.mark.parametrize("kind, case, params, ds_key, reranking", CASE_IDS)
def test_ranker_contract(kind, case, params, ds_key, reranking, datasets, rankbench_home, request):
    needs_models = "@" in repr(params)
    tiny_cross_encoders = request.getfixturevalue("tiny_cross_encoders") if needs_models else None
    dataset = datasets[ds_key]
    ranker = make(kind, params, dataset, reranking, rankbench_home, tiny_cross_encoders)
    queries = dict(list(dataset.queries().items())[:12])
    cands = candidates_for(dataset, queries) if reranking else None
    k = 10
    run = ranker.rank(queries, cands, k)

    # shape
    assert set(run) <= set(queries)
    corpus = dataset.corpus()
    for qid, docs in run.items():
        assert isinstance(docs, dict) and len(docs) <= k
        for d, s in docs.items():
            assert isinstance(d, str) and d in corpus
            assert isinstance(s, float) and math.isfinite(s)
            if reranking:
                assert d in cands[qid], f"{kind} returned {d}, not a candidate of {qid}"
    assert sum(len(v) for v in run.values()) > 0

    # determinism: again, and with a fresh instance
    assert ranker.rank(queries, cands, k) == run
    again = make(kind, params, dataset, reranking, rankbench_home, tiny_cross_encoders)
    assert again.rank(queries, cands, k) == run

    # a query's ranking does not depend on the rest of its batch
    qid = sorted(queries)[1]
    alone = ranker.rank({qid: queries[qid]}, cands, k)[qid]
    if ranker.batch_invariant:
        assert list(alone) == list(run[qid]) or _same_up_to_ties(alone, run[qid])
        for d in alone:
            assert alone[d] == pytest.approx(run[qid][d], rel=1e-5, abs=1e-5)
    else:     # declared: scores move with the batch (dynamic INT8), the ranking barely
        full = ranker.rank({qid: queries[qid]}, cands, len(cands[qid]))[qid]
        batched = ranker.rank(queries, cands, len(cands[qid]))[qid]
        from scipy.stats import spearmanr

        assert spearmanr([full[d] for d in cands[qid]], [batched[d] for d in cands[qid]])[0] >= 0.95
        assert max(abs(full[d] - batched[d]) for d in cands[qid]) > 0      # the declaration is true

    # empty inputs
    assert ranker.rank({}, {} if reranking else None, k) == {}
    if reranking:
        empty = ranker.rank({qid: queries[qid]}, {qid: {}}, k)
        assert empty.get(qid, {}) == {}
    ranker.close()


def _same_up_to_ties(a: dict, b: dict) -> bool:
    return sorted(a.items(), key=lambda kv: (-round(kv[1], 5), kv[0])) == \
        sorted(b.items(), key=lambda kv: (-round(kv[1], 5), kv[0]))


class Overlap(PairScorer):
    """A real (if simple) pair scorer: the share of query terms found in the document."""

    kind = "overlap"
    calls: list[int] = []

    def score(self, pairs):
        Overlap.calls.append(len(pairs))
        out = []
        for q, d in pairs:
            qt, dt = set(q.lower().split()), set(d.lower().split())
            out.append(len(qt & dt) / max(len(qt), 1))
        return np.array(out)


def test_the_rerank_adapter_scores_all_pairs_of_all_queries_in_one_call(datasets, rankbench_home):
    dataset = datasets["dl19"]
    ranker = Overlap("overlap", None, Context(cache=Cache(rankbench_home), progress=False))
    assert ranker.applies_to(dataset, reranking=False) is not None     # a pair scorer only reranks
    ranker.prepare(dataset, reranking=True)
    queries = dict(list(dataset.queries().items())[:5])
    cands = candidates_for(dataset, queries)
    Overlap.calls.clear()
    run = ranker.rank(queries, cands, 7)
    assert Overlap.calls == [sum(len(c) for c in cands.values())]       # one batch across queries
    for q in queries:
        assert len(run[q]) == 7 and set(run[q]) <= set(cands[q])
        scores = list(run[q].values())
        assert scores == sorted(scores, reverse=True)
    # the top document really has the most query terms among the candidates
    q = next(iter(queries))
    docs = dataset.docs(cands[q])
    best = max(len(set(queries[q].lower().split()) & set(docs[d].joined().lower().split())) for d in cands[q])
    top = next(iter(run[q]))
    assert len(set(queries[q].lower().split()) & set(docs[top].joined().lower().split())) == best
    with pytest.raises(ValueError, match="only reranks"):
        ranker.rank(queries, None, 7)
