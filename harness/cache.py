"""A content-addressed cache of indexes, encoded corpora, models and runs.

Every entry lives under ``$RANKBENCH_HOME/<area>/<fingerprint>/`` and is created atomically
(built under a temporary name, renamed into place), so an interrupted job leaves either a
complete entry or none; the temporary folders a killed job leaves are removed by the next
(``sweep``). An entry that cannot be read back is moved to ``quarantine/`` (kept for a look,
never reused) and rebuilt. Fingerprints hash what determines the content (ranker kind, canonical
parameters, model and data file hashes, code versions), never a name.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from .errors import StorageError
from .files import atomic_dir, atomic_write_text, ensure_dir, sweep_stale

LOCKS = ".locks"      # under the home: one lock file per entry being built (see Cache.lock)


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


def _damage(entry: Path, files: dict | None) -> str | None:
    """What is wrong with an entry's files against the sizes recorded when it was built (a
    truncated or deleted file), or None. Entries from before sizes were recorded pass."""
    if not isinstance(files, dict):
        return None
    for rel, size in files.items():
        f = entry / rel
        try:
            got = f.stat().st_size
        except OSError:
            return f"{f} is missing (it was {size} bytes when the entry was built)"
        if got != size:
            return f"{f} is {got} bytes, {size} when the entry was built"
    return None


class Cache:
    def __init__(self, home: Path | None = None):
        self.home = Path(home) if home else rankbench_home()
        self._checked = False

    def check_home(self) -> Path:
        """The home is a folder that can be written (once per process), or a StorageError that
        says which setting to change."""
        if not self._checked:
            where = ("RANKBENCH_HOME=" + os.environ["RANKBENCH_HOME"]) if os.environ.get("RANKBENCH_HOME") \
                else "the cache home"
            try:
                from .files import check_writable

                check_writable(self.home, "cache home")
            except StorageError as e:
                raise StorageError(f"{where}: {e}; point RANKBENCH_HOME at a folder you can write") from None
            self._checked = True
        return self.home

    def sweep(self) -> list[Path]:
        """Remove the temporary entries that killed processes left, in every area."""
        removed: list[Path] = []
        if not self.home.is_dir():
            return removed
        for area in self.home.iterdir():
            if area.is_dir() and area.name not in ("quarantine", LOCKS):
                removed += sweep_stale(area)
                for shard in area.iterdir():
                    if shard.is_dir() and len(shard.name) == 2:
                        removed += sweep_stale(shard)
        return removed

    def quarantine(self, area: str, key: str, reason: str) -> Path | None:
        """Move an unreadable entry out of the way (to quarantine/, with why), so it is rebuilt."""
        p = self.path(area, key)
        if not p.exists():
            return None
        dest = ensure_dir(self.home / "quarantine", "cache quarantine") / f"{area}-{key[:16]}-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"
        os.rename(p, dest)
        atomic_write_text(dest / "QUARANTINED.txt", reason + "\n")
        print(f"warning: cache entry {area}/{key[:12]}… is damaged ({reason}); moved to {dest}, "
              f"it will be rebuilt", file=sys.stderr, flush=True)
        return dest

    def path(self, area: str, key: str) -> Path:
        return self.home / area / key[:2] / key

    def lock(self, area: str, key: str, what: str = ""):
        """The one builder of an entry: held while it is built, by whichever process (or node,
        on a shared cache home) got it first; the others wait, then find the entry built. Taken
        in dependency order only (a run before its first stage's run), so it cannot deadlock."""
        from .files import locked

        def waiting() -> None:
            print(f"waiting for another process building {area}/{key[:12]}…{' (' + what + ')' if what else ''}",
                  file=sys.stderr, flush=True)

        return locked(self.home / LOCKS / area / f"{key}.lock", waiting)

    @contextmanager
    def get_or_lock(self, area: str, key: str, what: str = "") -> Iterator[Path | None]:
        """``get`` under the entry's lock (see ``lock``): the entry's folder, or None while this
        process holds the lock to build it."""
        self.check_home()
        with self.lock(area, key, what):
            yield self.get(area, key)

    def get(self, area: str, key: str) -> Path | None:
        p = self.path(area, key)
        if not (p / "entry.json").exists():
            return None
        try:
            meta = json.loads((p / "entry.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            self.quarantine(area, key, f"entry.json unreadable: {e}")
            return None
        problem = _damage(p, meta.get("files") if isinstance(meta, dict) else None)
        if problem:
            self.quarantine(area, key, problem)
            return None
        return p

    @contextmanager
    def build(self, area: str, key: str, describe: dict, replace: bool = False) -> Iterator[Path]:
        """Yield a temporary folder to fill; on success it becomes the entry for key (replacing an
        existing one only if ``replace``).

        ``entry.json`` (what the entry is, when and how long it took to build) is written last,
        so an entry without it is incomplete and is never returned by ``get``.
        """
        self.check_home()
        final = self.path(area, key)
        start = time.perf_counter()
        with atomic_dir(final, replace=replace) as tmp:
            yield tmp
            files = {f.relative_to(tmp).as_posix(): f.stat().st_size for f in sorted(tmp.rglob("*")) if f.is_file()}
            meta = dict(describe, key=key, build_seconds=round(time.perf_counter() - start, 3),
                        created=time.strftime("%Y-%m-%dT%H:%M:%S%z"), bytes=sum(files.values()), files=files)
            atomic_write_text(tmp / "entry.json", json.dumps(meta, indent=1, sort_keys=True, default=str))

    def entry(self, area: str, key: str) -> dict:
        p = self.get(area, key)
        return json.loads((p / "entry.json").read_text()) if p else {}

    def artifact(self, area: str, key: str, describe: dict, build) -> tuple[Path, dict]:
        """Return the entry for key, building it with ``build(folder)`` first if absent: built
        once, however many processes ask at the same time."""
        got = self.get(area, key)
        if got is None:
            with self.get_or_lock(area, key, describe.get("what", "")) as got:
                if got is None:
                    with self.build(area, key, describe) as tmp:
                        build(tmp)
                    got = self.path(area, key)
        return got, json.loads((got / "entry.json").read_text())

