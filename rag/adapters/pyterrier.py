"""PyTerrier: a Transformer that rescores a result frame (qid, query, docno, text).

    from rag.adapters.pyterrier import RankbenchReranker
    pipeline = bm25 % 100 >> RankbenchReranker("ce-distilled-student-rerank-bm25")

``pip install rankbench[pyterrier]`` (pyterrier). No JVM is needed for this transformer.
"""
from __future__ import annotations

try:
    import pyterrier as pt
except ImportError as e:           # pragma: no cover - the extra is missing
    raise ImportError("rag.adapters.pyterrier needs pyterrier: pip install 'rankbench[pyterrier]'") from e

from .base import scorer


class RankbenchReranker(pt.Transformer):
    def __init__(self, target: str, config=None, api_key: str | None = None, text_field: str = "text"):
        self.target = target
        self.config = config
        self.api_key = api_key
        self.text_field = text_field
        self._scorer = None

    def transform(self, inp):
        import pandas as pd

        for col in ("qid", "query", "docno", self.text_field):
            if col not in inp.columns:
                raise KeyError(f"RankbenchReranker: the input frame has no {col!r} column "
                               f"(it has {', '.join(map(str, inp.columns))})")
        if self._scorer is None:
            self._scorer = scorer(self.target, self.config, self.api_key)
        parts = []
        for qid, group in inp.groupby("qid", sort=False):
            queries = group["query"].unique()
            if len(queries) != 1:
                raise ValueError(f"RankbenchReranker: query {qid!r} has {len(queries)} different texts")
            out = group.copy()
            out["score"] = self._scorer.scores(str(queries[0]), [str(t) for t in group[self.text_field]])
            parts.append(out)
        if not parts:
            return inp.assign(score=pd.Series(dtype=float), rank=pd.Series(dtype=int))
        res = pd.concat(parts, ignore_index=True)
        # best first within a query, ties in the order given (as every adapter breaks them)
        res = res.sort_values(["qid", "score"], ascending=[True, False], kind="stable")
        return pt.model.add_ranks(res.reset_index(drop=True))
