"""BM25 over a 'flat' document (title + " " + text), as Pyserini's BEIR baselines index it.

Two backends:
- ``pyserini``: Lucene through Anserini, the reference implementation (Porter stemmer, Lucene's
  English stopwords). Reproduces Pyserini's published BEIR flat figures.
- ``bm25s``: a sparse-matrix BM25 in numpy (Snowball stemmer, the same 33 stopwords,
  ``method="lucene"`` scoring): much faster, close but not identical to Lucene.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Literal, Mapping

from harness.errors import RankerUnavailable
from harness.params import ranged
from harness.types import Run

from .base import Footprint, Ranker, require

BM25S_STOPWORDS = "en"         # bm25s' list: Lucene's 33 English stopwords
BM25S_STEMMER = "english"      # PyStemmer's Snowball English


@dataclass(frozen=True)
class BM25Params:
    backend: Literal["pyserini", "bm25s"] = "pyserini"
    k1: float = ranged(0.9, ge=0)
    b: float = ranged(0.4, ge=0, le=1)
    method: Literal["lucene", "robertson", "atire", "bm25l", "bm25+"] = "lucene"   # bm25s only
    threads: int = ranged(0, ge=0)   # 0: all cores


class BM25(Ranker):
    kind = "bm25"
    VERSION = 1
    Params = BM25Params
    OPERATIONAL = frozenset({"threads"})
    reranks = True      # bm25s only: scores given candidates (a lexical member of a fusion teacher)

    def applies_to(self, dataset, reranking: bool) -> str | None:
        if reranking and self.params.backend == "pyserini":
            return 'the pyserini backend only searches; backend = "bm25s" scores given candidates'
        return super().applies_to(dataset, reranking)

    def _threads(self) -> int:
        return self.params.threads or self.ctx.threads or os.cpu_count() or 1

    def fingerprint_inputs(self, dataset) -> dict:
        base = super().fingerprint_inputs(dataset)
        if self.params.backend == "pyserini":
            base["params"].pop("method")
            base["library"] = "pyserini " + _version("pyserini")
        else:
            base["library"] = "bm25s " + _version("bm25s")
        return base

    # -- index ---------------------------------------------------------------------------------

    def _index(self, dataset) -> tuple[str, str, str]:
        """The index's cache area, key and description."""
        from harness.cache import fingerprint

        key_parts = {"corpus": dataset.corpus_fingerprint(), "version": self.VERSION,
                     "backend": self.params.backend}
        if self.params.backend == "pyserini":
            key_parts["library"] = _version("pyserini")
            return "bm25-pyserini", fingerprint(key_parts), "Lucene index (pyserini)"
        key_parts.update(library=_version("bm25s"), k1=self.params.k1, b=self.params.b,
                         method=self.params.method, stemmer=BM25S_STEMMER, stopwords=BM25S_STOPWORDS)
        return "bm25-bm25s", fingerprint(key_parts), "bm25s index"

    def planned(self, dataset, reranking):
        from .base import Planned

        area, key, what = self._index(dataset)
        return [Planned("index", area, key, f"{what} of {dataset.name}")]

    def prepare(self, dataset, reranking=False):
        super().prepare(dataset, reranking)
        area, key, what = self._index(dataset)
        build = self._build_lucene if self.params.backend == "pyserini" else self._build_bm25s
        self.index_dir, self.index_entry = self.ctx.cache.artifact(area, key, {"what": what, "dataset": dataset.name},
                                                                   build)
        if self.params.backend == "pyserini":
            self._open_lucene()
        else:
            self._open_bm25s()

    def start_runtime(self) -> str | None:
        if self.params.backend != "pyserini":
            return None
        from ._jvm import start_jvm

        start_jvm()
        return "JVM"

    def _docs(self):
        corpus = self.dataset.corpus()
        return [(did, doc.joined()) for did, doc in corpus.items()]

    def _build_lucene(self, folder):
        from tqdm.auto import tqdm

        from ._jvm import start_jvm

        start_jvm()
        from pyserini.index.lucene import LuceneIndexer

        docs = self._docs()
        indexer = LuceneIndexer(str(folder / "index"), threads=1)
        step = 2000
        with tqdm(total=len(docs), desc=f"index {self.dataset.name} (Lucene)", unit="doc",
                  disable=not self.ctx.progress) as bar:
            for i in range(0, len(docs), step):
                indexer.add_batch_dict([{"id": d, "contents": t} for d, t in docs[i:i + step]])
                bar.update(min(step, len(docs) - i))
        indexer.close()

    def _open_lucene(self):
        """Anserini's searcher, the Java object under pyserini's ``LuceneSearcher``, called as
        that class calls it (``set_bm25``, then ``batch_search``). Importing pyserini's search
        package would import its dense encoders too (torch, transformers, scikit-learn: 9 of its
        11 s start here, and a gigabyte of memory that BM25 never uses)."""
        from ._jvm import start_jvm

        start_jvm()
        from jnius import autoclass

        self._searcher = autoclass("io.anserini.search.SimpleSearcher")(str(self.index_dir / "index"))
        self._searcher.set_bm25(float(self.params.k1), float(self.params.b))
        self._jlist = autoclass("java.util.ArrayList")

    def _tokenizer(self):
        require("Stemmer", "bm25", "BM25 with the bm25s backend")
        import Stemmer
        from bm25s.tokenization import Tokenizer

        return Tokenizer(stopwords=BM25S_STOPWORDS, stemmer=Stemmer.Stemmer(BM25S_STEMMER))

    def _build_bm25s(self, folder):
        bm25s = require("bm25s", "bm25", "BM25 with the bm25s backend")
        docs = self._docs()
        tok = self._tokenizer()
        tokens = tok.tokenize([t for _, t in docs], show_progress=self.ctx.progress, return_as="tuple")
        model = bm25s.BM25(k1=self.params.k1, b=self.params.b, method=self.params.method)
        model.index(tokens, show_progress=self.ctx.progress)
        model.save(str(folder / "model"))
        tok.save_vocab(str(folder / "model"))
        (folder / "doc_ids.json").write_text(json.dumps([d for d, _ in docs]))

    def _open_bm25s(self):
        bm25s = require("bm25s", "bm25", "BM25 with the bm25s backend")
        self._bm25s = bm25s.BM25.load(str(self.index_dir / "model"))
        self._tok = self._tokenizer()
        self._tok.load_vocab(str(self.index_dir / "model"))
        self._doc_ids = json.loads((self.index_dir / "doc_ids.json").read_text())
        self._positions = None

    # -- search ----------------------------------------------------------------------------------

    def rank(self, queries: Mapping[str, str], candidates: Run | None, k: int) -> Run:
        if not queries:
            return {}
        if candidates is not None:
            if self.params.backend == "pyserini":
                raise RankerUnavailable(f"ranker {self.name}: " + self.applies_to(self.dataset, True))
            return self._rerank_bm25s(queries, candidates, k)
        if self.params.backend == "pyserini":
            return self._rank_lucene(queries, k)
        return self._rank_bm25s(queries, k)

    def _rerank_bm25s(self, queries, candidates: Run, k: int) -> Run:
        """Each candidate's BM25 score for the query, from the corpus index (so with its statistics)."""
        from harness.types import ranked

        if getattr(self, "_positions", None) is None:
            self._positions = {d: i for i, d in enumerate(self._doc_ids)}
        qids = list(queries)
        ids = self._tok.tokenize([queries[q] for q in qids], update_vocab=False, show_progress=False,
                                 return_as="ids")
        out: Run = {}
        for row, q in enumerate(qids):
            scores = self._bm25s.get_scores_from_ids(list(ids[row]))
            cands = candidates.get(q, {})
            unknown = [d for d in cands if d not in self._positions]
            if unknown:
                raise ValueError(f"ranker {self.name}: candidate {unknown[0]!r} of query {q!r} is not in "
                                 f"{self.dataset.name}'s corpus")
            out[q] = dict(ranked({d: float(scores[self._positions[d]]) for d in cands})[:k])
        return out

    def _rank_lucene(self, queries, k):
        from tqdm.auto import tqdm

        qids = list(queries)
        out: Run = {}
        step = 64
        for i in tqdm(range(0, len(qids), step), desc="BM25 (Lucene)", unit="batch",
                      disable=not self.ctx.progress or len(qids) <= step):
            chunk = qids[i:i + step]
            texts, ids = self._jlist(), self._jlist()
            for q in chunk:
                texts.add(queries[q])
                ids.add(q)
            results = self._searcher.batch_search(texts, ids, int(k), int(self._threads()))
            hits = {r.getKey(): r.getValue() for r in results.entrySet().toArray()}
            for q in chunk:
                out[q] = {h.docid: float(h.score) for h in hits.get(q, [])}
        return out

    def _rank_bm25s(self, queries, k):
        qids = list(queries)
        ids = self._tok.tokenize([queries[q] for q in qids], update_vocab=False, show_progress=False,
                                 return_as="ids")
        k_eff = min(k, len(self._doc_ids))
        docs, scores = self._bm25s.retrieve(ids, k=k_eff, show_progress=self.ctx.progress and len(qids) > 64,
                                            n_threads=self._threads() if len(qids) > 64 else 1)
        out: Run = {}
        for row, q in enumerate(qids):
            out[q] = {self._doc_ids[int(j)]: float(s) for j, s in zip(docs[row], scores[row]) if s > 0}
        return out

    def footprint(self) -> Footprint:
        from harness.files import tree_bytes

        if getattr(self, "index_dir", None) is None:
            return Footprint()
        return Footprint(index_bytes=tree_bytes(self.index_dir), build_seconds=self.index_entry.get("build_seconds"))

    def close(self):
        if getattr(self, "_searcher", None) is not None:
            self._searcher.close()
            self._searcher = None
        self._bm25s = None
        self._positions = None


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "missing"
