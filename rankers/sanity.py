"""Sanity rankers: they test the pipeline without a model and bound every table.

``oracle`` orders by the qrels (the best any ranker can do on those candidates); ``random``
orders at random, seeded per query so one query ranked alone gets the same order as in a batch.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Mapping

from harness.types import Run, ranked

from .base import Ranker


class Oracle(Ranker):
    """Scores each document by its judged grade: reranking, the ideal order of the candidates;
    retrieving, the judged-relevant documents best first."""

    kind = "oracle"
    reranks = True
    new_queries = False       # it orders by the judgments of the dataset's own queries

    def rank(self, queries: Mapping[str, str], candidates: Run | None, k: int) -> Run:
        qrels = self.dataset.qrels()
        corpus = self.dataset.corpus() if candidates is None else None
        out: Run = {}
        for qid in queries:
            judged = qrels.get(qid, {})
            if candidates is None:   # only what the corpus holds: a judged id it lacks is no document
                scores = {d: float(g) for d, g in judged.items() if g > 0 and d in corpus}
            else:
                scores = {d: float(judged.get(d, 0)) for d in candidates.get(qid, {})}
            out[qid] = dict(ranked(scores)[:k])
        return out


@dataclass(frozen=True)
class RandomParams:
    seed: int = 0


def _rng(seed: int, qid: str):
    import numpy as np

    digest = hashlib.sha256(f"{seed}\0{qid}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


class Random(Ranker):
    """Reranking: the candidates in a random order. Retrieving: k documents drawn at random."""

    kind = "random"
    Params = RandomParams
    reranks = True
    reranks_texts = True

    def prepare(self, dataset, reranking=False):
        super().prepare(dataset, reranking)
        self._doc_ids = None if reranking else sorted(dataset.corpus())

    def rank(self, queries: Mapping[str, str], candidates: Run | None, k: int) -> Run:
        out: Run = {}
        for qid in queries:
            rng = _rng(self.params.seed, qid)
            if candidates is None:
                pool = self._doc_ids
                picks = rng.choice(len(pool), size=min(k, len(pool)), replace=False)
                docs = [pool[i] for i in picks]
            else:
                docs = sorted(candidates.get(qid, {}))
                docs = [docs[i] for i in rng.permutation(len(docs))][:k]
            out[qid] = {d: float(len(docs) - i) for i, d in enumerate(docs)}
        return out
