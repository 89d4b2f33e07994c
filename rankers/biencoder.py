"""Bi-encoder on sentence-transformers: exact cosine search by default, FAISS HNSW as an option.

Documents are encoded as BEIR and MTEB do (title + " " + text, truncated at the model's
max_seq_length unless ``max_length`` says otherwise). The encoded corpus is cached by content
(model file hashes, corpus hash, encoding settings). Reranking encodes the candidates online, as
the benchmark measures it; a deployment that encoded its corpus ahead reranks from those rows and
encodes only the query (``rerank_from_corpus``, ``indexed``), and the runner times that too.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Literal, Mapping

from harness.params import ranged
from harness.types import Run, ranked

from .base import Footprint, Ranker, require

if TYPE_CHECKING:
    import numpy as np


@dataclass(frozen=True)
class BiEncoderParams:
    model: str = "sentence-transformers/all-MiniLM-L6-v2"
    max_length: int | None = ranged(None, ge=1)   # None: the model's own max_seq_length
    query_prefix: str = ""
    doc_prefix: str = ""
    normalize: bool = True               # cosine similarity
    index: Literal["exact", "hnsw"] = "exact"
    hnsw_m: int = ranged(32, ge=2)
    hnsw_ef_construction: int = ranged(200, ge=1)
    hnsw_ef_search: int = ranged(256, ge=1)
    batch_size: int = ranged(64, ge=1)
    device: str = "cpu"
    threads: int = ranged(0, ge=0)
    # as sentence-transformers' SentenceTransformer(backend=...): "onnx" exports the model once
    # (fp32, rankers.onnx) and encodes through onnxruntime
    backend: Literal["torch", "onnx"] = "torch"


@lru_cache(maxsize=4)
def _load(path: str, device: str, max_length: int | None):
    from harness.net import is_offline

    is_offline()          # sets HF_HUB_OFFLINE before the hub library is imported, when offline
    require("sentence_transformers", "dense", "the bi-encoder")
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(path, device=device, local_files_only=True)   # a resolved local folder, never the hub
    if max_length is not None:
        model.max_seq_length = max_length
    model.eval()
    return model


class BiEncoder(Ranker):
    kind = "bi-encoder"
    VERSION = 1
    Params = BiEncoderParams
    OPERATIONAL = frozenset({"batch_size", "threads"})
    reranks = True
    reranks_texts = True

    @classmethod
    def implementation(cls, params) -> type:
        if params.backend == "onnx":      # by name, as kinds are: rankers.onnx builds on this module
            from . import load_kind

            return load_kind("rankers.onnx_backend:OnnxBackendBiEncoder")
        return cls

    def __init__(self, name, params, ctx):
        super().__init__(name, params, ctx)
        self._resolved = None
        self._emb = None
        self._faiss = None
        self._index_dir = None
        self._enc_entry = {}
        # (row of each doc id, embeddings): reranking reads candidates' rows from here, and encodes
        # online only those missing; None: every candidate is encoded online (the benchmark's run)
        self._indexed = None
        self._indexed_corpus = False   # _indexed is the encoded corpus (refreshed when it changes)
        self._recording = None         # doc id -> embedding, kept from online reranking while recording

    @property
    def resolved(self):
        if self._resolved is None:
            self._resolved = self.find_model(self.params.model)
        return self._resolved

    def model_identity(self) -> dict:
        if self.recipe is not None:
            return {"recipe": self.trained_models().identity(self.recipe)}
        return self.resolved.identity()

    def resolve_models(self) -> None:
        _ = self.resolved

    def start_runtime(self) -> str | None:
        require("sentence_transformers", "dense", "the bi-encoder")
        import sentence_transformers  # noqa: F401  (imports torch and transformers)

        return "torch"

    def _params_for_index(self) -> dict:
        p = self.params
        return {"max_length": p.max_length, "doc_prefix": p.doc_prefix, "normalize": p.normalize,
                "device": p.device}

    @property
    def model(self):
        if self.params.threads or self.ctx.threads:
            import torch

            torch.set_num_threads(self.params.threads or self.ctx.threads)
        return _load(str(self.resolved.path), self.params.device, self.params.max_length)

    def _encode(self, texts: list[str], progress: bool) -> "np.ndarray":
        import numpy as np

        if not texts:
            model = self.model
            dim = (getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension)()
            return np.zeros((0, dim), dtype=np.float32)
        return self.model.encode(texts, batch_size=self.params.batch_size, convert_to_numpy=True,
                                 normalize_embeddings=self.params.normalize,
                                 show_progress_bar=progress and self.ctx.progress).astype(np.float32)

    def _doc_texts(self, ids, dataset=None) -> list[str]:
        docs = (dataset or self.dataset).docs(ids)
        return [self.params.doc_prefix + docs[i].joined() for i in ids]

    def corpus_texts(self, dataset) -> tuple[list[str], list[str]]:
        """The corpus as this encoder reads it: (doc ids in corpus order, texts)."""
        ids = list(dataset.corpus())
        return ids, self._doc_texts(ids, dataset)

    def encode_batches(self, texts: list[str]) -> list[list[int]]:
        """The batches ``_encode`` forms of these texts, as positions: sentence-transformers sorts
        by its length estimate, then cuts ``batch_size``. Encoding each batch on its own (in any
        process, in any order) gives the same bits as encoding all at once: how Ray Data encodes
        a corpus into the same cache entry (distributed.encode)."""
        import numpy as np
        from sentence_transformers import SentenceTransformer

        order = np.argsort([-SentenceTransformer._input_length(t) for t in texts])
        bs = self.params.batch_size
        return [order[i:i + bs].tolist() for i in range(0, len(order), bs)]

    def corpus_key(self, dataset) -> str:
        """The cache key of the dataset's corpus encoded by this model."""
        from harness.cache import fingerprint

        return fingerprint({"corpus": dataset.corpus_fingerprint(), "model": self.model_identity(),
                            "encode": self._params_for_index(), "version": self.VERSION})

    def planned(self, dataset, reranking):
        from .base import Planned

        if reranking:
            return []
        out = [Planned("encode", "bi-encoder-corpus", self.corpus_key(dataset),
                       f"{dataset.name}'s corpus encoded by {self.params.model}")]
        if self.params.index == "hnsw":
            out.append(Planned("index", "bi-encoder-hnsw", self._hnsw_key(self.corpus_key(dataset)),
                               f"FAISS HNSW index of {dataset.name}"))
        return out

    def prepare(self, dataset, reranking=False):
        super().prepare(dataset, reranking)
        _ = self.model     # load now, so loading is not counted as ranking time
        if reranking:
            return
        import numpy as np

        key = self.corpus_key(dataset)

        def build(folder):
            ids, texts = self.corpus_texts(dataset)
            emb = self._encode(texts, progress=True)
            np.save(folder / "embeddings.npy", emb)
            (folder / "doc_ids.txt").write_text("\n".join(ids) + "\n", encoding="utf-8")

        enc_dir, self._enc_entry = self.ctx.cache.artifact("bi-encoder-corpus", key,
                                             {"what": "encoded corpus", "model": self.params.model,
                                              "dataset": dataset.name}, build)
        self._emb = np.load(enc_dir / "embeddings.npy", mmap_mode="r")
        self._ids = (enc_dir / "doc_ids.txt").read_text(encoding="utf-8").splitlines()
        self._index_dir = [enc_dir]
        if self.params.index == "hnsw":
            self._prepare_hnsw(key)
        if self._indexed_corpus:
            self.rerank_from_corpus()

    def rerank_from_corpus(self) -> None:
        """Rerank candidates from the encoded corpus's rows, encoding only the query (the server
        does this once the corpus is encoded): what a deployment pays per query."""
        from .base import PrepareError

        if self._emb is None:
            raise PrepareError(f"ranker {self.name}: the corpus is not encoded (prepare it without "
                               f"reranking=True first), so there are no rows to rerank from")
        self._indexed = ({d: i for i, d in enumerate(self._ids)}, self._emb)
        self._indexed_corpus = True

    @contextmanager
    def recording(self):
        """Within: online reranking keeps each candidate's embedding in the dict yielded."""
        kept: dict = {}
        self._recording = kept
        try:
            yield kept
        finally:
            self._recording = None

    @contextmanager
    def indexed(self, embeddings: Mapping[str, "np.ndarray"]):
        """Within: candidates found in ``embeddings`` (doc id -> vector, computed ahead) are read,
        not encoded; only the query and any other candidate are encoded online."""
        import numpy as np

        ids = list(embeddings)
        mat = np.stack([np.asarray(embeddings[d], dtype=np.float32) for d in ids]) if ids else None
        outer = self._indexed, self._indexed_corpus
        self._indexed, self._indexed_corpus = ({d: i for i, d in enumerate(ids)}, mat), False
        try:
            yield
        finally:
            self._indexed, self._indexed_corpus = outer

    def _hnsw_key(self, enc_key: str) -> str:
        faiss = require("faiss", "dense", "the bi-encoder's HNSW index")
        from harness.cache import fingerprint

        p = self.params
        return fingerprint({"encoded": enc_key, "m": p.hnsw_m, "efc": p.hnsw_ef_construction,
                            "faiss": faiss.__version__})

    def _prepare_hnsw(self, enc_key: str):
        faiss = require("faiss", "dense", "the bi-encoder's HNSW index")
        import numpy as np

        p = self.params
        key = self._hnsw_key(enc_key)

        def build(folder):
            faiss.omp_set_num_threads(1)       # single-threaded insertion: a deterministic graph
            index = faiss.IndexHNSWFlat(self._emb.shape[1], p.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = p.hnsw_ef_construction
            index.add(np.ascontiguousarray(self._emb))
            faiss.write_index(index, str(folder / "hnsw.faiss"))

        hnsw_dir, _ = self.ctx.cache.artifact("bi-encoder-hnsw", key, {"what": "FAISS HNSW index"}, build)
        self._faiss = faiss.read_index(str(hnsw_dir / "hnsw.faiss"))
        self._faiss.hnsw.efSearch = max(p.hnsw_ef_search, 1)
        self._index_dir.append(hnsw_dir)

    def rank(self, queries: Mapping[str, str], candidates: Run | None, k: int) -> Run:
        if not queries:
            return {}
        qids = list(queries)
        q_emb = self._encode([self.params.query_prefix + queries[q] for q in qids], progress=len(qids) > 256)
        if candidates is not None:
            return self._rerank(qids, q_emb, candidates, k)
        if self._faiss is not None:
            return self._search_hnsw(qids, q_emb, k)
        return self._search_exact(qids, q_emb, k)

    def _search_exact(self, qids, q_emb, k):
        import numpy as np

        out: Run = {}
        emb = self._emb
        k_eff = min(k, emb.shape[0])
        step = 256
        for i in range(0, len(qids), step):
            scores = q_emb[i:i + step] @ emb.T
            top = np.argpartition(-scores, k_eff - 1, axis=1)[:, :k_eff]
            for row, q in enumerate(qids[i:i + step]):
                out[q] = {self._ids[j]: float(scores[row, j]) for j in top[row]}
        return out

    def _search_hnsw(self, qids, q_emb, k):
        import numpy as np

        scores, idx = self._faiss.search(np.ascontiguousarray(q_emb), min(k, len(self._ids)))
        return {q: {self._ids[j]: float(s) for j, s in zip(idx[r], scores[r]) if j >= 0}
                for r, q in enumerate(qids)}

    def _rerank(self, qids, q_emb, candidates, k):
        import numpy as np

        doc_ids = sorted({d for q in qids for d in candidates.get(q, {})})
        if self._indexed is not None:
            # candidates' rows computed ahead: only the query (and any unknown candidate) is encoded
            rows, emb = self._indexed
            known = [d for d in doc_ids if d in rows]
            rest = [d for d in doc_ids if d not in rows]
            parts = [np.asarray(emb[[rows[d] for d in known]])] if known else []
            if rest:
                parts.append(self._encode(self._doc_texts(rest), progress=False))
            doc_ids = known + rest
            d_emb = np.concatenate(parts) if parts else np.zeros((0, q_emb.shape[1]), dtype=np.float32)
        else:
            d_emb = self._encode(self._doc_texts(doc_ids), progress=len(doc_ids) > 500)
            if self._recording is not None:
                self._recording.update(zip(doc_ids, d_emb))
        row = {d: i for i, d in enumerate(doc_ids)}
        out: Run = {}
        for qi, q in enumerate(qids):
            cands = list(candidates.get(q, {}))
            if not cands:
                out[q] = {}
                continue
            scores = d_emb[[row[d] for d in cands]] @ q_emb[qi]
            out[q] = dict(ranked({d: float(s) for d, s in zip(cands, np.asarray(scores))})[:k])
        return out

    def footprint(self) -> Footprint:
        from harness.files import tree_bytes

        model = self.model
        params = sum(p.numel() for p in model.parameters())
        dtype = str(next(model.parameters()).dtype).replace("torch.", "")
        index = sum(tree_bytes(d) for d in self._index_dir) if self._index_dir else 0
        return Footprint(index_bytes=index, model_bytes=self.resolved.bytes(), params=params,
                         dtype=dtype, device=self.params.device,
                         build_seconds=self._enc_entry.get("build_seconds") if self._index_dir else None)

    def close(self):
        self._emb = None
        self._faiss = None
        self._indexed, self._indexed_corpus = None, False
