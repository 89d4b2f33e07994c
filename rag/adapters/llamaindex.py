"""LlamaIndex: a node postprocessor that reranks and keeps the retrieval score beside the rerank score.

    from rag.adapters.llamaindex import RankbenchRerank
    post = RankbenchRerank(target="ce-distilled-student-rerank-bm25", top_n=3)
    nodes = post.postprocess_nodes(nodes, query_str="do statins lower mortality?")
    nodes[0].score, nodes[0].node.metadata["retrieval_score"]

``pip install rankbench[llamaindex]`` (llama-index-core).
"""
from __future__ import annotations

from typing import Any, List, Optional

try:
    from llama_index.core.bridge.pydantic import Field, PrivateAttr
    from llama_index.core.postprocessor.types import BaseNodePostprocessor
    from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle
except ImportError as e:           # pragma: no cover - the extra is missing
    raise ImportError("rag.adapters.llamaindex needs llama-index-core: pip install 'rankbench[llamaindex]'") from e

from .base import rerank, scorer, sigmoid


class RankbenchRerank(BaseNodePostprocessor):
    target: str = Field(description="a bench.toml ranker name, or a rankbench serve URL")
    top_n: Optional[int] = Field(default=3, description="None: all; 0: none")
    threshold: Optional[float] = Field(default=None, description="on the presented score; 0.0 is a threshold")
    scale_score: bool = Field(default=False, description="True: the sigmoid of the raw score")
    config: Any = Field(default=None, description="bench.toml path or Config, for a local ranker")
    api_key: Optional[str] = Field(default=None)
    _scorer: Any = PrivateAttr(default=None)

    @classmethod
    def class_name(cls) -> str:
        return "RankbenchRerank"

    def _postprocess_nodes(self, nodes: List[NodeWithScore],
                           query_bundle: Optional[QueryBundle] = None) -> List[NodeWithScore]:
        if query_bundle is None:
            raise ValueError("RankbenchRerank needs the query (query_bundle or query_str)")
        if not nodes:
            return []
        if self._scorer is None:
            self._scorer = scorer(self.target, self.config, self.api_key)
        texts = [n.node.get_content(metadata_mode=MetadataMode.NONE) for n in nodes]
        got = rerank(self._scorer.scores, query_bundle.query_str, texts, top_n=self.top_n,
                     threshold=self.threshold, present=sigmoid if self.scale_score else None)
        out = []
        for s in got:
            n = nodes[s.index]
            node = n.node.model_copy()
            node.metadata = {**n.node.metadata, "retrieval_score": n.score, "raw_score": s.raw}
            out.append(NodeWithScore(node=node, score=s.score))
        return out
