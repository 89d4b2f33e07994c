"""Cross-encoder reranker on sentence-transformers' ``CrossEncoder``.

``model`` is a Hub id (online, or found in the Hugging Face cache), a local folder, or
``recipe:NAME``: a model that bench.toml's ``[recipes.NAME]`` trains here (built on first use,
then read from the content-addressed cache). Pairs are scored through ``rankers.pairs``: one
tokenization, length-sorted batches, padding only to each batch's longest pair; the run's
efficiency record carries the share of pairs whose document was cut at ``max_length``.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Mapping, Sequence

from harness.params import ranged

from .base import Footprint, PairScorer, require
from .pairs import PairBatches, TruncationStats

if TYPE_CHECKING:
    import numpy as np

    from harness.types import Run

@dataclass(frozen=True)
class CrossEncoderParams:
    model: str
    max_length: int | None = ranged(None, ge=1)   # None: the model's own max_seq_length (at most 512)
    batch_size: int = ranged(32, ge=1)
    device: str = "cpu"
    threads: int = ranged(0, ge=0)
    # as sentence-transformers' CrossEncoder(backend=...): "onnx" exports the model once (fp32,
    # rankers.onnx) and scores through onnxruntime
    backend: Literal["torch", "onnx"] = "torch"


@lru_cache(maxsize=4)
def load_cross_encoder(path: str, device: str):
    from harness.net import is_offline

    is_offline()          # sets HF_HUB_OFFLINE before the hub library is imported, when offline
    require("sentence_transformers", "dense", "the cross-encoder")
    from sentence_transformers import CrossEncoder

    model = CrossEncoder(path, device=device, local_files_only=True, trust_remote_code=_own_modules_only(Path(path)))
    model.eval()
    return model


OWN_MODULES = ("rankers.heads.",)


def _own_modules_only(folder: Path) -> bool:
    """True when the folder's modules.json names rankbench's own head modules (and otherwise only
    sentence-transformers' own), and its config asks for no remote code: then loading them runs
    code from this package, not from the model folder. Anything else stays untrusted."""
    import json

    modules = folder / "modules.json"
    if not modules.is_file():
        return False
    types = [m.get("type", "") for m in json.loads(modules.read_text(encoding="utf-8"))]
    ours = [t for t in types if t.startswith(OWN_MODULES)]
    foreign = [t for t in types if not t.startswith(OWN_MODULES) and not t.startswith("sentence_transformers.")]
    for cfg in folder.rglob("config.json"):
        if "auto_map" in json.loads(cfg.read_text(encoding="utf-8")):
            return False
    return bool(ours) and not foreign


def model_max_length(model) -> int:
    n = getattr(model, "max_seq_length", None) or getattr(model.tokenizer, "model_max_length", 512)
    return int(min(n, 512))


def score_pairs(model, pairs: Sequence[tuple[str, str]], max_length: int, batch_size: int,
                stats: TruncationStats | None = None) -> "np.ndarray":
    """Scores of a sentence-transformers CrossEncoder for pairs, in input order (raw logits)."""
    import numpy as np
    import torch

    out = np.empty(len(pairs), dtype=np.float32)
    batches = PairBatches(model.tokenizer, pairs, max_length, batch_size)
    device = model.device
    with torch.inference_mode():
        for idx, feats in batches:
            features = {k: torch.from_numpy(v).to(device) for k, v in feats.items()}
            scores = model(features)["scores"]
            out[idx] = scores.float().reshape(len(idx), -1)[:, 0].cpu().numpy()
    if stats is not None:
        stats.add(batches.stats)
    return out


class CrossEncoderRanker(PairScorer):
    kind = "cross-encoder"
    VERSION = 1
    Params = CrossEncoderParams
    OPERATIONAL = frozenset({"batch_size", "threads"})

    @classmethod
    def implementation(cls, params) -> type:
        if params.backend == "onnx":      # by name, as kinds are: rankers.onnx builds on this module
            from . import load_kind

            return load_kind("rankers.onnx_backend:OnnxBackendCrossEncoder")
        return cls

    def __init__(self, name, params, ctx):
        super().__init__(name, params, ctx)
        self._path: Path | None = None
        self._identity: dict | None = None
        self._stats = TruncationStats()

    def model_identity(self) -> dict:
        if self._identity is None:
            if self.recipe is not None:
                self._identity = {"recipe": self.trained_models().identity(self.recipe)}
            else:
                from ._models import resolve_model

                self._identity = resolve_model(self.params.model).identity()
        return self._identity

    def start_runtime(self) -> str | None:
        require("sentence_transformers", "dense", "the cross-encoder")
        import sentence_transformers  # noqa: F401  (imports torch and transformers)

        return "torch"

    @property
    def path(self) -> Path:
        if self._path is None:
            self._path = self.find_model(self.params.model).path
        return self._path

    def resolve_models(self) -> None:
        _ = self.path

    @property
    def model(self):
        if self.params.threads or self.ctx.threads:
            import torch

            torch.set_num_threads(self.params.threads or self.ctx.threads)
        return load_cross_encoder(str(self.path), self.params.device)

    @property
    def max_length(self) -> int:
        return self.params.max_length or model_max_length(self.model)

    def prepare(self, dataset, reranking=False):
        super().prepare(dataset, reranking)
        _ = self.model      # load (or train) now, so it is not counted as ranking time

    def rank(self, queries: Mapping[str, str], candidates: "Run | None", k: int) -> "Run":
        self._stats = TruncationStats()
        return super().rank(queries, candidates, k)

    def score(self, pairs):
        return score_pairs(self.model, pairs, self.max_length, self.params.batch_size, self._stats)

    def score_batches(self, pairs) -> list[list[int]]:
        """The batches ``score`` cuts (positions): scored one by one, the same bits."""
        return PairBatches(self.model.tokenizer, pairs, self.max_length, self.params.batch_size).positions()

    def run_stats(self) -> dict:
        return {"truncation": {**self._stats.as_dict(), "max_length": self.max_length}}

    def footprint(self) -> Footprint:
        from harness.files import tree_bytes

        model = self.model
        params = sum(p.numel() for p in model.parameters())
        dtype = str(next(model.parameters()).dtype).replace("torch.", "")
        return Footprint(model_bytes=tree_bytes(self.path), params=params, dtype=dtype, device=self.params.device)
