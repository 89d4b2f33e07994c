"""Ranker kinds. The registry maps a kind name to a lazy "module:Class" string, so nothing heavy
is imported until a ranker of that kind is built.

Third-party rankers: name the class directly (``kind = "mypkg.rankers:MyRanker"``) or register it
under the ``rankbench.rankers`` entry-point group.
"""
from __future__ import annotations

import functools
import importlib

KINDS: dict[str, str] = {
    "bm25": "rankers.bm25:BM25",
    "bi-encoder": "rankers.biencoder:BiEncoder",
    "cross-encoder": "rankers.crossencoder:CrossEncoderRanker",
    "fusion": "rankers.fusion:Fusion",
    "onnx": "rankers.onnx:OnnxRanker",
    "run": "rankers.runfile:RunFile",
    "oracle": "rankers.sanity:Oracle",
    "random": "rankers.sanity:Random",
}


@functools.lru_cache(maxsize=1)
def _entry_points() -> dict[str, str]:
    """Third-party kinds, read once per process (reading entry points scans every installed
    package's metadata: it was most of the time a plan of a big suite took)."""
    from importlib.metadata import entry_points

    return {ep.name: ep.value for ep in entry_points(group="rankbench.rankers")}


def all_kinds() -> dict[str, str]:
    return {**_entry_points(), **KINDS}


def load_kind(kind: str, where: str = ""):
    """The Ranker class for a kind name or a "module:Class" path."""
    from harness.errors import ConfigError, unknown

    target = KINDS.get(kind) or (kind if ":" in kind else None)
    if target is None:
        kinds = all_kinds()
        target = kinds.get(kind)
    if target is None:
        raise ConfigError(unknown("ranker kind", kind, kinds, where))
    module, _, cls = target.partition(":")
    try:
        obj = getattr(importlib.import_module(module), cls)
    except (ImportError, AttributeError) as e:
        raise ConfigError(f"{where}: cannot load ranker kind {kind!r} from {target!r}: {e}") from None
    return obj
