"""LangChain: a document compressor that keeps the scores, and a retriever.

    from rag.adapters.langchain import RankbenchReranker, RankbenchRetriever
    reranker = RankbenchReranker(target="ce-distilled-student-rerank-bm25", top_n=3)
    docs = reranker.compress_documents(documents, "do statins lower mortality?")
    docs[0].metadata["relevance_score"]        # LangChain's CrossEncoderReranker drops it

``pip install rankbench[langchain]`` (langchain-core).
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

try:
    from langchain_core.callbacks import CallbackManagerForRetrieverRun, Callbacks
    from langchain_core.documents import BaseDocumentCompressor, Document
    from langchain_core.retrievers import BaseRetriever
except ImportError as e:           # pragma: no cover - the extra is missing
    raise ImportError("rag.adapters.langchain needs langchain-core: pip install 'rankbench[langchain]'") from e
from pydantic import ConfigDict, PrivateAttr

from .base import rerank, scorer, searcher, sigmoid


class RankbenchReranker(BaseDocumentCompressor):
    """Reranks documents with a rankbench ranker; each returned document carries
    ``metadata["relevance_score"]`` (and ``"raw_score"``: the model's own), best first."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    target: str                        # a bench.toml ranker name, or a rankbench serve URL
    top_n: Optional[int] = 3           # None: all; 0: none
    threshold: Optional[float] = None  # on the presented score; 0.0 is a threshold
    scale_score: bool = False          # True: the sigmoid of the raw score
    config: Any = None                 # bench.toml path or Config, for a local ranker
    api_key: Optional[str] = None      # for a server started with --api-key
    _scorer: Any = PrivateAttr(default=None)

    def _get(self):
        if self._scorer is None:
            self._scorer = scorer(self.target, self.config, self.api_key)
        return self._scorer

    def compress_documents(self, documents: Sequence[Document], query: str, callbacks: Optional[Callbacks] = None,
                           *, top_n: Optional[int] = None, threshold: Optional[float] = None,
                           scale_score: Optional[bool] = None) -> Sequence[Document]:
        """Overrides for this call replace the fields when given (None: the field's value)."""
        docs = list(documents)
        scale = self.scale_score if scale_score is None else scale_score
        got = rerank(self._get().scores, query, [d.page_content for d in docs],
                     top_n=self.top_n if top_n is None else top_n,
                     threshold=self.threshold if threshold is None else threshold,
                     present=sigmoid if scale else None)
        out = []
        for s in got:
            d = docs[s.index]
            out.append(Document(page_content=d.page_content, id=d.id,
                                metadata={**d.metadata, "relevance_score": s.score, "raw_score": s.raw}))
        return out


class RankbenchRetriever(BaseRetriever):
    """A rankbench chain (first stage, then reranker) over a bench.toml dataset's corpus, or a
    running server's ``/search``: documents with ``metadata`` doc_id, title, score, rank."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    target: str
    dataset: Optional[str] = None      # for a local ranker: the dataset whose corpus is searched
    k: int = 10
    config: Any = None
    api_key: Optional[str] = None
    _scorer: Any = PrivateAttr(default=None)

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        if self._scorer is None:
            self._scorer = searcher(self.target, self.config, self.api_key)
        hits = self._scorer.search(query, self.k, self.dataset)
        return [Document(page_content=h["text"], id=h["doc_id"],
                         metadata={"doc_id": h["doc_id"], "title": h.get("title", ""), "score": h["score"],
                                   "rank": h["rank"]}) for h in hits]

