"""ONNX rankers: another ranker's model exported to ONNX and run by onnxruntime.

    [rankers.ce-student-int8]
    kind = "onnx"
    source = "ce-student-rerank-bm25"   # a cross-encoder or bi-encoder ranker of bench.toml
    variant = "int8-dynamic"            # fp32 | int8-dynamic | int8-static | fp16
    first_stage = "bm25"
    depth = 100

The source's model (a Hub id, a folder, or a model trained here) is exported once by
``torch.onnx.export`` and, for the INT8 variants, quantized by onnxruntime; the result lands in
the content-addressed cache (area ``onnx``) under a key made of the source model's identity, the
variant and its settings, the calibration data and the library versions. ``rankbench export
RANKER`` builds it; so does the first run that needs it.

The tokenizer runs outside the graph and scoring goes through the same code as the torch
rankers: a cross-encoder's pairs through ``rankers.pairs.PairBatches`` (length-sorted batches,
padding to each batch's longest pair), a bi-encoder's texts through ``rankers.pairs.TextBatches``
and the bi-encoder's own search and rerank code. Only the forward pass differs.

Variants:
- ``fp32``: the exported graph as is (scores equal torch's within float noise).
- ``int8-dynamic``: weights quantized to int8 ahead of time (per output channel), activations
  quantized at run time from their observed range. MatMul weights, and the embedding tables (most
  of a small model's bytes) as ``embeddings`` says: ``per-row`` (the default: one scale per token's
  row, written here since onnxruntime's quantizer gives a Gather table one scale for all rows),
  ``per-tensor`` (onnxruntime's) or ``float``.
- ``int8-static``: weights and activations quantized ahead of time, activation ranges calibrated
  on a sample of the source's training queries and candidates (a recipe's training examples, or
  ``calibration = "DATASET"``: never a dataset a suite using this ranker evaluates).
- ``fp16``: half-precision weights for GPU execution (``provider = "cuda"``).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Mapping

from harness.errors import ConfigError, RankerUnavailable
from harness.params import ranged

from .base import Footprint, Ranker, require
from .onnx_forward import OnnxBiEncoder, OnnxCrossEncoder, _bytes, _session, _tokenizer, load_tokenizer
from .pairs import PairBatches, TextBatches


os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

SOURCE_KINDS = ("cross-encoder", "bi-encoder")
EXPORT_VERSION = 1      # bump when export or quantization changes what an entry holds


@dataclass(frozen=True)
class OnnxParams:
    source: str = ""                       # the ranker whose model is exported
    variant: Literal["fp32", "int8-dynamic", "int8-static", "fp16"] = "fp32"
    per_channel: bool = True               # int8: one scale per output channel of each weight
    embeddings: Literal["per-row", "per-tensor", "float"] = "per-row"   # int8: how the embedding tables are stored
    calibration: str | None = None         # int8-static: dataset to calibrate on (default: the recipe's training data)
    calibration_queries: int = ranged(64, ge=1)   # int8-static: queries sampled for calibration
    calibration_depth: int = ranged(8, ge=1)      # int8-static: candidates per query
    calibrate_method: Literal["minmax", "entropy", "percentile"] = "minmax"
    keep_float: tuple[str, ...] | None = None   # int8: node groups left in float ("ffn-output"); None: the variant's default
    opset: int = ranged(17, ge=13)
    max_length: int | None = ranged(None, ge=1)   # None: the source's
    batch_size: int = ranged(32, ge=1)
    provider: Literal["cpu", "cuda"] = "cpu"
    graph_optimization: Literal["disabled", "basic", "extended", "all"] = "all"
    threads: int = ranged(0, ge=0)                # intra-op threads; 0: the harness's setting, else all cores


class OnnxRanker(Ranker):
    """Delegates to a torch ranker class of the source's kind whose forward pass is onnxruntime's."""

    kind = "onnx"
    VERSION = 1
    Params = OnnxParams
    OPERATIONAL = frozenset({"batch_size", "threads", "graph_optimization"})
    reranks = True
    runs_references = False      # the source lends its model; its chain is never run
    reranks_texts = True         # its source is a cross-encoder or a bi-encoder
    references_key = "source"

    @classmethod
    def references(cls, params: OnnxParams, where: str) -> tuple[str, ...]:
        if not params.source:
            raise ConfigError(f"{where}: needs source = \"RANKER\": the cross-encoder or bi-encoder to export")
        if params.calibration_queries < 1 or params.calibration_depth < 1:
            raise ConfigError(f"{where}: calibration_queries and calibration_depth must be at least 1")
        if params.opset < 14:
            raise ConfigError(f"{where}: opset must be 14 or more (attention exports need it), found {params.opset}")
        if params.variant == "fp16" and params.provider != "cuda":
            raise ConfigError(f"{where}: variant \"fp16\" is for GPU execution: set provider = \"cuda\" "
                              f"(onnxruntime's CPU kernels run fp16 slower than fp32)")
        for group in params.keep_float or ():
            if group not in KEEP_FLOAT_GROUPS:
                raise ConfigError(f"{where}: keep_float: unknown node group {group!r} (known: {', '.join(KEEP_FLOAT_GROUPS)})")
        if params.calibration is not None and params.variant != "int8-static":
            raise ConfigError(f"{where}: calibration only applies to variant \"int8-static\"")
        return (params.source,)

    @classmethod
    def check_references(cls, params: OnnxParams, rankers: Mapping, where: str) -> None:
        source = rankers[params.source]
        if source.kind not in SOURCE_KINDS:
            raise ConfigError(f"{where}: source {params.source!r} is a {source.kind!r} ranker; onnx exports "
                              f"one of {', '.join(SOURCE_KINDS)}")

    def __init__(self, name, params, ctx):
        super().__init__(name, params, ctx)
        self._inner = None
        self._export: tuple[Path, dict, str] | None = None    # (folder, entry, key), once per instance
        self._info: dict | None = None
        # dynamic INT8 quantizes each batch's activations with one scale from that batch's range: a
        # pair's score moves (slightly) with its batch-mates
        self.batch_invariant = params.variant != "int8-dynamic"

    # -- the source and the exported model --------------------------------------------------------

    def _rankers(self):
        if self.ctx.rankers is None:
            raise RankerUnavailable(f"ranker {self.name}: an onnx ranker reaches its source {self.params.source!r} "
                                    f"through the config's rankers (Context.rankers): build it with "
                                    f"harness.pipeline.RankerSet")
        return self.ctx.rankers

    @property
    def source(self):
        """The source ranker's instance (its model, its parameters)."""
        return self._rankers().instance(self.params.source)

    @property
    def source_kind(self) -> str:
        return self._rankers().config.ranker(self.params.source).kind

    def export_identity(self) -> dict:
        """What the exported files depend on: the source model, the variant's settings, the
        calibration data, the libraries."""
        from harness.params import as_dict

        p = as_dict(self.params)
        settings = {k: p[k] for k in ("variant", "opset", "max_length")}
        if self.params.variant.startswith("int8"):
            settings.update(per_channel=self.params.per_channel, embeddings=self.params.embeddings,
                            keep_float=list(keep_float(self.params)))
        if self.params.variant == "int8-static":
            settings.update({k: p[k] for k in ("calibration", "calibration_queries", "calibration_depth",
                                               "calibrate_method")})
            settings["calibration_data"] = self._calibration_identity()
        return {"source_kind": self.source_kind, "source_model": self.source.model_identity(),
                "source_max_length": self.source.params.max_length, "settings": settings,
                "libraries": _versions(), "export_version": EXPORT_VERSION}

    def _key(self) -> str:
        from harness.cache import fingerprint

        return self._export[2] if self._export else fingerprint(self.export_identity())

    def model_identity(self) -> dict:
        return {"onnx": self._key()}

    def export(self) -> tuple[Path, dict]:
        """The exported (and quantized) model's cache folder and entry, built when missing; looked
        up once per instance, so scoring never hashes the source model again."""
        if self._export is None:
            key = self._key()
            describe = {"what": "onnx model", "ranker": self.name, "source": self.params.source,
                        "variant": self.params.variant}
            folder, entry = self.ctx.cache.artifact("onnx", key, describe, self._build)
            self._export = (folder, entry, key)
        return self._export[0], self._export[1]

    def resolve_models(self) -> None:
        self.export()

    def planned_models(self):
        from .base import Planned

        return self.source.planned_models() + [
            Planned("export", "onnx", self._key(), f"{self.params.source} exported to ONNX ({self.params.variant})")]

    def planned(self, dataset, reranking):
        return self.inner.planned(dataset, reranking)

    def _build(self, folder: Path) -> None:
        from .base import refuse_while_ranking
        from .onnx_export import export_model, quantize

        refuse_while_ranking(f"the ONNX export of ranker {self.name}")

        src = self.source
        fp32 = folder / "model.fp32.onnx"
        info = export_model(Path(src.path if self.source_kind == "cross-encoder" else src.resolved.path),
                            self.source_kind, fp32, opset=self.params.opset, log=self._log)
        calibration = self._calibration_inputs(folder / info["tokenizer_dir"], info) if self.params.variant == "int8-static" else None
        quantize(fp32, folder / "model.onnx", self.params, calibration=calibration, keep_float=keep_float(self.params),
                 log=self._log)
        fp32.unlink(missing_ok=True)      # fp32: moved into model.onnx; the others: only their own file
        (folder / "export.json").write_text(json.dumps({**info, "variant": self.params.variant,
                                                        "identity": self.export_identity()},
                                                       indent=1, sort_keys=True, default=str) + "\n")

    def _log(self, msg: str) -> None:
        self._rankers().log(f"[onnx {self.name}] {msg}")

    # -- calibration (int8-static) ----------------------------------------------------------------

    def _calibration_identity(self) -> dict:
        if self.params.calibration is None:
            recipe = self.source.recipe
            if recipe is None:
                raise ConfigError(f"[rankers.{self.name}]: variant int8-static calibrates on the source's training "
                                  f"data, and {self.params.source} is not trained here: set calibration = \"DATASET\" "
                                  f"(a training split no suite using this ranker evaluates)")
            return {"recipe": self.trained_models().identity(recipe)}
        ds = self._calibration_dataset()
        return {"dataset": ds.fingerprint()}

    def _calibration_dataset(self):
        rankers = self._rankers()
        config = rankers.config
        name = self.params.calibration
        ds = rankers.dataset(name)
        users = {r for r in config.rankers if any(s.name == self.name for s in config.closure(r))}
        twin = self.trained_models().guard.evaluated_twin(name, users)     # the one leakage guard (training.guard)
        if twin is not None:
            raise ConfigError(f"[rankers.{self.name}]: calibration dataset {name} is evaluated by suite "
                              f"{twin[0]} ({twin[1]}), which uses this ranker; calibrate on a training split")
        return ds

    def calibration_texts(self) -> list[tuple[str, str]]:
        """(query, document) pairs to calibrate on, from training data only, seeded."""
        import random

        p = self.params
        pairs: list[tuple[str, str]] = []
        if p.calibration is None:
            data = self.trained_models().training_data(self.source.recipe)
            for e in data.examples[:p.calibration_queries]:
                docs = [e.positive] + list(e.negatives)
                pairs += [(e.query, d) for d in docs[:p.calibration_depth]]
            return pairs
        ds = self._calibration_dataset()
        queries, qrels = ds.queries(), ds.qrels()
        qids = sorted(q for q in qrels if q in queries)
        qids = random.Random(f"{self.ctx.seed}:calibration").sample(qids, min(p.calibration_queries, len(qids)))
        for q in qids:
            judged = sorted(qrels[q], key=lambda d: (-qrels[q][d], d))[:p.calibration_depth]
            docs = ds.docs(set(judged))
            pairs += [(queries[q], docs[d].joined()) for d in judged if d in docs]
        if not pairs:
            raise ConfigError(f"[rankers.{self.name}]: calibration dataset {p.calibration} gave no judged pairs")
        return pairs

    def _calibration_inputs(self, tokenizer_dir: Path, info: dict) -> list[dict]:
        """The model's input batches for the calibration pairs (bi-encoders see each text alone)."""
        tok = load_tokenizer(str(tokenizer_dir))
        pairs = self.calibration_texts()
        max_length = self.params.max_length or info["max_length"]
        names = set(info["inputs"])
        if self.source_kind == "cross-encoder":
            batches = PairBatches(tok, pairs, max_length, 8)
        else:
            texts = list(dict.fromkeys([q for q, _ in pairs] + [d for _, d in pairs]))
            batches = TextBatches(tok, texts, max_length, 8)
        # every calibration batch padded to one width: the histogram methods (entropy, percentile)
        # stack them
        import numpy as np

        pad = tok.pad_token_id or 0
        return [{k: np.pad(v, ((0, 0), (0, max_length - v.shape[1])), constant_values=pad if k == "input_ids" else 0)
                 for k, v in feats.items() if k in names} for _, feats in batches]

    # -- ranking: a torch ranker class with onnxruntime's forward pass ------------------------------

    @property
    def inner(self):
        if self._inner is None:
            src_spec = self._rankers().config.ranker(self.params.source)
            cls = OnnxCrossEncoder if src_spec.kind == "cross-encoder" else OnnxBiEncoder
            self._inner = cls(self.name, src_spec.params, self.ctx, self)
        return self._inner

    def start_runtime(self) -> str | None:
        require("onnxruntime", "onnx", "the onnx ranker")
        import onnxruntime  # noqa: F401
        # the tokenizer saved beside the graph is loaded by its own class (load_tokenizer), which
        # needs transformers but not torch: AutoTokenizer would import torch (2.3 s here)
        import transformers  # noqa: F401

        return "onnxruntime"

    def applies_to(self, dataset, reranking):
        return self.inner.applies_to(dataset, reranking)

    def prepare(self, dataset, reranking=False):
        super().prepare(dataset, reranking)
        self.inner.prepare(dataset, reranking)

    def rank(self, queries, candidates, k):
        return self.inner.rank(queries, candidates, k)

    def run_stats(self) -> dict:
        return self.inner.run_stats()

    def footprint(self) -> Footprint:
        return self.inner.footprint()

    def close(self):
        if self._inner is not None:
            self._inner.close()

    # -- the session -----------------------------------------------------------------------------

    def session(self):
        folder, _ = self.export()
        threads = self.params.threads or self.ctx.threads
        return _session(str(folder / "model.onnx"), self.params.provider, self.params.graph_optimization, threads)

    def folder(self) -> Path:
        return self.export()[0]

    def info(self) -> dict:
        if self._info is None:
            self._info = json.loads((self.folder() / "export.json").read_text())
        return self._info

    def tokenizer(self):
        return _tokenizer(str(self.folder() / "tokenizer"))

    def max_length(self) -> int:
        return self.params.max_length or self.info()["max_length"]

    def onnx_footprint(self, index_bytes: int = 0, build_seconds=None) -> Footprint:
        from harness.files import tree_bytes

        folder = self.folder()
        info = self.info()
        dtype = {"fp32": "float32", "fp16": "float16"}.get(self.params.variant, "int8")
        return Footprint(index_bytes=index_bytes, model_bytes=tree_bytes(folder) - _bytes(folder / "entry.json"),
                         params=info.get("params", 0), dtype=dtype, device=self.params.provider,
                         build_seconds=build_seconds)


KEEP_FLOAT_GROUPS = ("ffn-output",)


def keep_float(params: OnnxParams) -> tuple[str, ...]:
    """Node groups an INT8 variant leaves in float. Static INT8 keeps the feed-forward output
    projections in float by default: their inputs (GELU outputs) carry outliers that one calibrated
    activation scale cannot cover (on ce-distilled, DL 2019 sample: Spearman 0.92 quantizing them,
    0.98 keeping them). Dynamic INT8 measures each batch's range, and quantizes everything."""
    if params.keep_float is not None:
        return tuple(params.keep_float)
    return ("ffn-output",) if params.variant == "int8-static" else ()


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("torch", "onnx", "onnxruntime", "transformers", "sentence-transformers"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    return out
