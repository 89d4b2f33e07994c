"""Haystack: a ranker component, serialisable with to_dict/from_dict.

    from rag.adapters.haystack import RankbenchRanker
    ranker = RankbenchRanker(target="ce-distilled-student-rerank-bm25", top_k=3)
    ranker.run(query="do statins lower mortality?", documents=docs)["documents"]

Runtime values replace the init values when given, falsy ones included: ``run(top_k=0)`` returns
nothing, ``score_threshold=0.0`` is a threshold, ``scale_score=False`` keeps raw scores (Haystack's
own rankers once resolved these with ``or`` and lost them). ``pip install rankbench[haystack]``.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Dict, List, Optional

os.environ.setdefault("HAYSTACK_TELEMETRY_ENABLED", "False")    # no posthog calls from a test or a server
try:
    from haystack import Document, component, default_from_dict, default_to_dict
except ImportError as e:           # pragma: no cover - the extra is missing
    raise ImportError("rag.adapters.haystack needs haystack-ai: pip install 'rankbench[haystack]'") from e

from .base import rerank, scorer, sigmoid


@component
class RankbenchRanker:
    def __init__(self, target: str, top_k: Optional[int] = 10, score_threshold: Optional[float] = None,
                 scale_score: bool = False, config: Optional[str] = None, api_key: Optional[str] = None):
        self.target = target
        self.top_k = top_k
        self.score_threshold = score_threshold
        self.scale_score = scale_score
        self.config = config
        self.api_key = api_key
        self._scorer = None

    def warm_up(self) -> None:
        if self._scorer is None:
            self._scorer = scorer(self.target, self.config, self.api_key)

    def to_dict(self) -> Dict[str, Any]:
        # the API key is not written out: it belongs in the environment, not in a pipeline file
        return default_to_dict(self, target=self.target, top_k=self.top_k, score_threshold=self.score_threshold,
                               scale_score=self.scale_score, config=self.config)

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "RankbenchRanker":
        return default_from_dict(cls, data)

    @component.output_types(documents=List[Document])
    def run(self, query: str, documents: List[Document], top_k: Optional[int] = None,
            score_threshold: Optional[float] = None, scale_score: Optional[bool] = None):
        self.warm_up()
        if not documents:
            return {"documents": []}
        top_k = self.top_k if top_k is None else top_k
        threshold = self.score_threshold if score_threshold is None else score_threshold
        scale = self.scale_score if scale_score is None else scale_score
        got = rerank(self._scorer.scores, query, [d.content or "" for d in documents], top_n=top_k,
                     threshold=threshold, present=sigmoid if scale else None)
        out = []
        for s in got:
            d = documents[s.index]
            out.append(dataclasses.replace(d, score=s.score, meta={**d.meta, "raw_score": s.raw}))
        return {"documents": out}
