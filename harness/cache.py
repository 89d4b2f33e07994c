"""A content-addressed cache of indexes, encoded corpora, models and runs.

Every entry lives under ``$RANKBENCH_HOME/<area>/<fingerprint>/`` and is created atomically
(built under a temporary name, renamed into place), so an interrupted job leaves either a
complete entry or none. Fingerprints hash what determines the content (ranker kind, canonical
parameters, model and data file hashes, code versions), never a name.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from .files import atomic_dir, atomic_write_text, tree_bytes


def rankbench_home() -> Path:
    """$RANKBENCH_HOME, else $XDG_CACHE_HOME/rankbench, else ~/.cache/rankbench."""
    env = os.environ.get("RANKBENCH_HOME")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "rankbench"


def canonical(obj: Any) -> str:
    """Canonical JSON: sorted keys, no whitespace; the input to every fingerprint."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def fingerprint(obj: Any) -> str:
    return hashlib.sha256(canonical(obj).encode("utf-8")).hexdigest()


class Cache:
    def __init__(self, home: Path | None = None):
        self.home = Path(home) if home else rankbench_home()

    def path(self, area: str, key: str) -> Path:
        return self.home / area / key[:2] / key

    def get(self, area: str, key: str) -> Path | None:
        p = self.path(area, key)
        return p if (p / "entry.json").exists() else None

    @contextmanager
    def build(self, area: str, key: str, describe: dict, replace: bool = False) -> Iterator[Path]:
        """Yield a temporary folder to fill; on success it becomes the entry for key (replacing an
        existing one only if ``replace``).

        ``entry.json`` (what the entry is, when and how long it took to build) is written last,
        so an entry without it is incomplete and is never returned by ``get``.
        """
        final = self.path(area, key)
        start = time.perf_counter()
        with atomic_dir(final, replace=replace) as tmp:
            yield tmp
            meta = dict(describe, key=key, build_seconds=round(time.perf_counter() - start, 3),
                        created=time.strftime("%Y-%m-%dT%H:%M:%S%z"), bytes=tree_bytes(tmp))
            atomic_write_text(tmp / "entry.json", json.dumps(meta, indent=1, sort_keys=True, default=str))

    def entry(self, area: str, key: str) -> dict:
        p = self.get(area, key)
        return json.loads((p / "entry.json").read_text()) if p else {}

    def artifact(self, area: str, key: str, describe: dict, build) -> tuple[Path, dict]:
        """Return the entry for key, building it with ``build(folder)`` first if absent."""
        got = self.get(area, key)
        if got is None:
            with self.build(area, key, describe) as tmp:
                build(tmp)
            got = self.path(area, key)
        return got, json.loads((got / "entry.json").read_text())
