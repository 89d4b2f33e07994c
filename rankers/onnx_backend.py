"""``backend = "onnx"``: a sentence-transformers kind (bi-encoder, cross-encoder) running its own
model through onnxruntime, exported by the onnx kind's code (rankers.onnx) into the same cache
entry as an fp32 onnx ranker over it. ``Ranker.implementation`` picks these classes."""
from __future__ import annotations

from .onnx import OnnxParams, OnnxRanker
from .onnx_forward import OnnxBiEncoder, OnnxCrossEncoder


class BackendExport(OnnxRanker):
    """The exported model behind a bi-encoder's or cross-encoder's ``backend = "onnx"``: its own
    model, exported to fp32 ONNX by the code of (and into the same cache entry as) an ``onnx``
    ranker of variant fp32 over it. Its source is the ranker's torch twin (the same parameters,
    ``backend = "torch"``): the model identity, the files exported, the recipe that trains it."""

    def __init__(self, name: str, params, ctx, torch_cls: type):
        from dataclasses import replace

        provider = "cuda" if str(params.device).startswith("cuda") else "cpu"
        super().__init__(name, OnnxParams(source=name, variant="fp32", max_length=params.max_length,
                                          batch_size=params.batch_size, threads=params.threads, provider=provider), ctx)
        self._source = torch_cls(name, replace(params, backend="torch"), ctx)

    @property
    def source(self):
        return self._source

    @property
    def source_kind(self) -> str:
        return self._source.kind

    def _log(self, msg: str) -> None:
        import sys

        log = self.ctx.rankers.log if self.ctx.rankers is not None else (lambda m: print(m, file=sys.stderr))
        log(f"[onnx backend {self.name}] {msg}")


class OnnxBackendBiEncoder(OnnxBiEncoder):
    """A bi-encoder with ``backend = "onnx"``: exact or HNSW search and reranking as the torch
    bi-encoder, each text encoded by onnxruntime (fp32: cosines within 1e-5 of torch's,
    tests/test_onnx_backend.py)."""

    def __init__(self, name, params, ctx):
        from .biencoder import BiEncoder

        super().__init__(name, params, ctx, BackendExport(name, params, ctx, BiEncoder))


class OnnxBackendCrossEncoder(OnnxCrossEncoder):
    """A cross-encoder with ``backend = "onnx"``: pairs scored by onnxruntime (fp32)."""

    def __init__(self, name, params, ctx):
        from .crossencoder import CrossEncoderRanker

        super().__init__(name, params, ctx, BackendExport(name, params, ctx, CrossEncoderRanker))
