"""The forward pass of the ONNX rankers: onnxruntime sessions, the tokenizer saved beside an
exported graph, and the torch ranker classes (cross-encoder, bi-encoder) with onnxruntime's
forward pass in place of torch's. Everything else (batching, search, reranking) is theirs."""
from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from harness.errors import RankerUnavailable

from .base import Footprint, require
from .biencoder import BiEncoder
from .crossencoder import CrossEncoderRanker
from .pairs import PairBatches, TextBatches

if TYPE_CHECKING:
    import numpy as np

os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")    # before onnxruntime is first imported


def _bytes(p: Path) -> int:
    return p.stat().st_size if p.exists() else 0


@lru_cache(maxsize=8)
def _session(path: str, provider: str, level: str, threads: int):
    ort = require("onnxruntime", "onnx", "the onnx ranker")
    so = ort.SessionOptions()
    so.graph_optimization_level = {
        "disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL, "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED, "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[level]
    if threads:
        so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    providers = ["CPUExecutionProvider"]
    if provider == "cuda":
        have = ort.get_available_providers()
        if "CUDAExecutionProvider" not in have:
            raise RankerUnavailable(f"provider \"cuda\" needs onnxruntime-gpu and a GPU; this onnxruntime has {have}")
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ort.InferenceSession(path, so, providers=providers)


def load_tokenizer(path: str):
    """The tokenizer saved in a local folder (beside an exported graph, or a resolved model's),
    never the hub: anything but an existing folder is refused before transformers is asked.

    The class the folder's ``tokenizer_config.json`` names (the one AutoTokenizer would pick) is
    loaded directly when transformers exports it: AutoTokenizer imports transformers' model
    configuration code, which imports torch, and an ONNX ranker needs none of it (8.2 s against
    3.6 s on a slow day here, and torch's few hundred MiB off the process's peak memory). Any
    other folder goes through AutoTokenizer."""
    import json

    from harness.net import is_offline

    folder = Path(path)
    if not folder.is_dir():
        raise RankerUnavailable(f"tokenizer {path}: no such folder (tokenizers are read from local folders only)")
    is_offline()
    import transformers

    try:
        named = json.loads((folder / "tokenizer_config.json").read_text()).get("tokenizer_class")
    except (OSError, ValueError, AttributeError):
        named = None
    cls = None
    if isinstance(named, str) and named.isidentifier():
        try:
            cls = getattr(transformers, named, None)
        except ImportError:
            pass
    if not hasattr(cls, "from_pretrained"):     # only here: naming AutoTokenizer imports torch
        cls = transformers.AutoTokenizer
    return cls.from_pretrained(str(folder), local_files_only=True)


@lru_cache(maxsize=8)
def _tokenizer(path: str):
    return load_tokenizer(path)


def _run(session, feats_iter, n: int, width: int | None = None) -> "np.ndarray":
    """Run the session over (positions, features) batches; rows of the first output in input order."""
    import numpy as np

    names = {i.name for i in session.get_inputs()}
    out = None
    for idx, feats in feats_iter:
        res = session.run(None, {k: v for k, v in feats.items() if k in names})[0]
        res = np.asarray(res, dtype=np.float32).reshape(len(idx), -1)
        if out is None:
            out = np.empty((n, res.shape[1]), dtype=np.float32)
        out[idx] = res
    if out is None:
        out = np.zeros((n, width or 1), dtype=np.float32)
    return out


class _OnnxForward:
    """Mixed into a torch ranker class: the onnx ranker that owns it supplies the model."""

    def __init__(self, name, params, ctx, outer: Any):      # the rankers.onnx.OnnxRanker that owns it
        super().__init__(name, params, ctx)
        self.outer = outer

    def model_identity(self) -> dict:
        return self.outer.model_identity()

    def resolve_models(self) -> None:
        self.outer.resolve_models()

    def start_runtime(self) -> str | None:
        return self.outer.start_runtime()

    def planned_models(self):
        return self.outer.planned_models()


class OnnxCrossEncoder(_OnnxForward, CrossEncoderRanker):
    """The cross-encoder ranker, scoring through onnxruntime."""

    @property
    def max_length(self) -> int:
        return self.outer.max_length()

    def prepare(self, dataset, reranking=False):
        self.dataset = dataset
        self.outer.session()       # export (or load) now: not ranking time
        self.outer.tokenizer()

    def score(self, pairs: Sequence[tuple[str, str]]) -> "np.ndarray":
        batches = PairBatches(self.outer.tokenizer(), pairs, self.max_length, self.outer.params.batch_size)
        out = _run(self.outer.session(), batches, len(pairs))[:, 0]
        self._stats.add(batches.stats)
        return out

    def score_batches(self, pairs: Sequence[tuple[str, str]]) -> list[list[int]]:
        return PairBatches(self.outer.tokenizer(), pairs, self.max_length, self.outer.params.batch_size).positions()

    def footprint(self) -> Footprint:
        return self.outer.onnx_footprint()


class OnnxBiEncoder(_OnnxForward, BiEncoder):
    """The bi-encoder ranker (exact or HNSW search, reranking), encoding through onnxruntime."""

    @property
    def model(self):
        return self.outer.session()

    def prepare(self, dataset, reranking=False):
        self.outer.tokenizer()     # with the session (BiEncoder.prepare): loading is not ranking time
        super().prepare(dataset, reranking)

    def encode_batches(self, texts: list[str]) -> list[list[int]]:
        """As ``TextBatches`` cuts them: a stable sort by token length, then ``batch_size``."""
        import numpy as np

        from .pairs import _order

        enc = self.outer.tokenizer()(list(texts), truncation=True, max_length=self.outer.max_length())
        lengths = np.fromiter((len(x) for x in enc["input_ids"]), dtype=np.int64, count=len(texts))
        order = _order(lengths)
        bs = self.outer.params.batch_size
        return [order[i:i + bs].tolist() for i in range(0, len(order), bs)]

    def _encode(self, texts: list[str], progress: bool) -> "np.ndarray":
        import numpy as np

        info = self.outer.info()
        batches = TextBatches(self.outer.tokenizer(), texts, self.outer.max_length(), self.outer.params.batch_size)
        emb = _run(self.outer.session(), batches, len(texts), width=info.get("dim"))
        if self.params.normalize:
            norms = np.linalg.norm(emb, axis=1, keepdims=True)
            emb = emb / np.maximum(norms, 1e-12)
        return emb.astype(np.float32)

    def footprint(self) -> Footprint:
        index = 0
        if self._index_dir:
            from harness.files import tree_bytes

            index = sum(tree_bytes(d) for d in self._index_dir)
        return self.outer.onnx_footprint(index, self._enc_entry.get("build_seconds") if self._index_dir else None)
