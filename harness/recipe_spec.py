"""The schema of bench.toml's ``[recipes.NAME]``: what a recipe may say, checked before anything
runs. Training itself (data mining, the leakage guard, the trainer) lives above the config."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .errors import ConfigError
from .params import ranged

DISTILL_TERMS = ("margin_mse", "listwise", "contrastive")   # the terms of training.losses' objective


@dataclass(frozen=True)
class RecipeSpec:
    """How to train one model. Every field is a bench.toml key of ``[recipes.NAME]``."""

    name: str
    produces: Literal["cross-encoder", "bi-encoder"] = "cross-encoder"   # bi-encoder: distillation only
    init: str = "sentence-transformers/all-MiniLM-L6-v2"   # starting encoder (Hub id or folder)
    layers: tuple[int, ...] = ()         # keep only these encoder layers (e.g. [0, 2, 4]); () = all
    head: Literal["segment-cosine", "classifier"] = "segment-cosine"
    max_length: int = ranged(128, ge=1)   # tokens per (query, document) pair while training
    train: tuple[str, ...] = ()          # datasets whose split's judged queries are training data
    examples_per_query: dict[str, int] = ranged(factory=dict, ge=1)   # dataset -> positives used per query (1)
    max_queries: int = ranged(0, ge=0)   # > 0: a seeded sample of at most this many queries per dataset
    dev: str | None = None               # dataset for checkpoint selection (nDCG@10 on reranked candidates)
    dev_queries: int = ranged(100, ge=1)
    dev_depth: int = ranged(20, ge=1)
    miners: tuple[str, ...] = ("bm25s", "minilm")   # rankers whose top mine_depth give hard negatives
    mine_depth: int = ranged(30, ge=1)
    negatives: int = ranged(3, ge=1)   # mined negatives per example
    loss: Literal["mnrl", "bce", "lambda", "distill"] = "mnrl"
    in_batch_negatives: int = ranged(1, ge=0)   # mnrl, distill: other examples' positives used as extra negatives
    teacher: str | None = None           # distill: a ranker of bench.toml that scores every example's documents
    distill_weights: dict[str, float] = ranged(
        factory=lambda: {"margin_mse": 0.6, "listwise": 0.2, "contrastive": 0.2}, ge=0)
    temperature: float = ranged(1.0, gt=0)   # distill: softmax temperature of the listwise term
    teacher_norm: Literal["zscore", "none"] = "zscore"   # distill: per-query scale of the teacher's scores
    batch_size: int = ranged(8, ge=1)
    grad_accum: int = ranged(1, ge=1)
    lr: float = ranged(3e-5, gt=0)
    warmup: float = ranged(0.1, ge=0, lt=1)   # share of steps with a linear warm-up, then linear decay
    epochs: float = ranged(1.0, gt=0)
    max_steps: int = ranged(0, ge=0)   # > 0 overrides epochs
    eval_steps: int = ranged(0, ge=0)   # dev evaluation (and checkpoint) every N steps; 0: at the end
    seed: int = 42
    lora: bool = False                   # train LoRA adapters (peft) instead of every weight
    lora_r: int = ranged(8, ge=1)
    description: str = ""


def parse_recipes(tables, datasets, rankers, where: str) -> dict[str, RecipeSpec]:
    from .errors import unknown
    from .params import build_params
    from .schema import _name, resolve_extends

    resolve = resolve_extends(tables, "recipes", where)
    out = {}
    for name in tables:
        w = f"{where} [recipes.{name}]"
        _name(name, w)
        spec = build_params(RecipeSpec, {"name": name, **resolve(name)}, w)
        if not spec.train:
            raise ConfigError(f"{w}: needs train = [datasets...]: the judged queries to learn from")
        for ds in spec.train + ((spec.dev,) if spec.dev else ()) + tuple(spec.examples_per_query):
            if ds not in datasets:
                raise ConfigError(unknown("dataset", ds, datasets, w))
        for r in spec.miners:
            if r not in rankers:
                raise ConfigError(unknown("miner ranker", r, rankers, w))
        if spec.produces == "bi-encoder" and (spec.loss != "distill" or spec.lora):
            raise ConfigError(f"{w}: a bi-encoder recipe learns from a teacher (loss = \"distill\"), without LoRA")
        if (spec.loss == "distill") != (spec.teacher is not None):
            raise ConfigError(f"{w}: loss = \"distill\" and teacher = \"RANKER\" go together "
                              f"(found loss {spec.loss!r}, teacher {spec.teacher!r})")
        if spec.teacher is not None:
            if spec.teacher not in rankers:
                raise ConfigError(unknown("teacher ranker", spec.teacher, rankers, w))
            for term, weight in spec.distill_weights.items():
                if term not in DISTILL_TERMS:
                    raise ConfigError(unknown("distill_weights term", term, DISTILL_TERMS, w))
            if not any(spec.distill_weights.values()):
                raise ConfigError(f"{w}: distill_weights needs at least one positive weight")
        out[name] = spec
    return out
