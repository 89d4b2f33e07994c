"""Files: atomic writes (nothing already written is lost), checked reading, hashing.

Every file and folder rankbench writes is built under a temporary name beside its target and
renamed into place, with the modes the umask gives (so a shared cache or reports folder works
for a teammate or a CI job). Temporary names carry the writer's host and pid, so one left by a
killed process is recognised, and removed, by the next run (``sweep_stale``).

Reading goes through ``read_lines``: gzip is decompressed transparently, and a damaged archive
or a line that is not UTF-8 is a ``DataError`` naming the file and line, never a traceback.
"""
from __future__ import annotations

import contextlib
import fnmatch
import gzip
import hashlib
import io
import os
import re
import shutil
import signal
import socket
import tempfile
import threading
import time
import zlib
from pathlib import Path
from typing import Callable, Iterator

from .errors import DataError, StorageError

_HASH_CACHE: dict[tuple[str, int, int], str] = {}

STALE_AFTER_S = 24 * 3600      # a temporary name from another host is stale after a day


def sha256_file(path: Path) -> str:
    """sha256 of a file, memoised on (path, size, mtime) for the life of the process."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _HASH_CACHE:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        _HASH_CACHE[key] = h.hexdigest()
    return _HASH_CACHE[key]


def sha256_tree(root: Path) -> str:
    """One digest over every file below root (relative paths and contents)."""
    h = hashlib.sha256()
    for p in sorted(x for x in root.rglob("*") if x.is_file()):
        h.update(p.relative_to(root).as_posix().encode() + b"\0" + sha256_file(p).encode() + b"\n")
    return h.hexdigest()


def tree_bytes(root: Path) -> int:
    if root.is_file():
        return root.stat().st_size
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


# ---------------------------------------------------------------------------------------------
# reading

def _gzip_problem(path: Path, e: BaseException) -> str:
    if isinstance(e, EOFError):
        return "the gzip stream ends early (a truncated download or copy?)"
    if isinstance(e, gzip.BadGzipFile):
        return f"not a gzip file ({e})" if "Not a gzipped file" in str(e) else f"the gzip data is corrupt ({e})"
    if isinstance(e, zlib.error):
        return f"the gzip data is corrupt ({e})"
    return f"{type(e).__name__}: {e}"


def _opener(path: Path):
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def _not_utf8(path: Path) -> DataError:
    """The first line of the file that is not UTF-8, found by a second, binary pass (lines counted
    at "\\n": the rare file with bare "\\r" line ends gets the number of its "\\n"-line)."""
    with _opener(path) as f:
        for n, raw in enumerate(f, 1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as e:
                col = len(raw[: e.start].decode("utf-8", "replace")) + 1
                return DataError(f"{path}:{n}: not UTF-8 text (byte 0x{raw[e.start]:02x} at column {col}); "
                                 f"save the file as UTF-8")
    return DataError(f"{path}: not UTF-8 text; save the file as UTF-8")


def read_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, text) for each line of a text file, plain or gzipped (by its .gz suffix).
    Lines end at "\\n", "\\r\\n" or "\\r", kept as they are (universal newlines, untranslated).

    A line that is not UTF-8 and a damaged or truncated gzip stream are DataErrors that name the
    file and the line (for a damaged archive: the line where reading stopped).
    """
    path = Path(path)
    try:
        raw = _opener(path)
    except OSError as e:
        raise DataError(f"{path}: cannot open ({e.strerror or e})") from None
    n = 0
    try:
        with io.TextIOWrapper(raw, encoding="utf-8", newline="") as f:
            for n, line in enumerate(f, 1):
                yield n, line.removeprefix("\ufeff") if n == 1 else line
    except UnicodeDecodeError:
        raise _not_utf8(path) from None
    except (OSError, EOFError, zlib.error) as e:
        what = _gzip_problem(path, e) if path.suffix == ".gz" else (getattr(e, "strerror", None) or str(e))
        raise DataError(f"{path}:{n + 1}: cannot read: {what}") from None


def read_text(path: Path) -> str:
    """A whole text file (plain or gzipped), with read_lines' errors."""
    return "".join(line for _, line in read_lines(path))


def read_toml(path: Path, error: type[Exception] = DataError) -> dict:
    """A TOML file, read with read_text's checks; a syntax error is ``error`` naming the file and
    tomllib's line and column."""
    import tomllib

    try:
        return tomllib.loads(read_text(path))
    except tomllib.TOMLDecodeError as e:
        raise error(f"{path}: {e}") from None


# ---------------------------------------------------------------------------------------------
# modes and temporary names

def _umask() -> int:
    try:
        m = re.search(r"^Umask:\s+([0-7]+)", Path("/proc/self/status").read_text(), re.M)
        if m:
            return int(m.group(1), 8)
    except OSError:
        pass
    old = os.umask(0o022)      # the portable way to read it: set and restore at once
    os.umask(old)
    return old


def file_mode() -> int:
    return 0o666 & ~_umask()


def dir_mode() -> int:
    return 0o777 & ~_umask()


def _host() -> str:
    return hashlib.sha1(socket.gethostname().encode()).hexdigest()[:8]


_TEMP = re.compile(r"\.rbtmp-([0-9a-f]{8})-(\d+)-")


def temp_prefix(name: str) -> str:
    """The prefix of a temporary name beside ``name``: host and pid say whose it is."""
    return f".{name}.rbtmp-{_host()}-{os.getpid()}-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_stale(entry: Path) -> bool:
    """A temporary file or folder whose writer is gone: a dead pid on this host, or a day old."""
    m = _TEMP.search(entry.name)
    if not m or not entry.name.startswith("."):
        return False
    host, pid = m.group(1), int(m.group(2))
    if host == _host():
        return pid != os.getpid() and not _alive(pid)
    try:
        return time.time() - entry.lstat().st_mtime > STALE_AFTER_S
    except OSError:
        return False


def sweep_stale(folder: Path) -> list[Path]:
    """Remove the temporary files and folders that killed writers left in a folder."""
    removed = []
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return removed
    for entry in entries:
        if is_stale(entry):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    entry.unlink()
            removed.append(entry)
    return removed


# ---------------------------------------------------------------------------------------------
# crash points (the crash tests' fault injection; unset in normal use)

_CRASH_COUNT: dict[str, int] = {}


def crash_point(point: str, path: Path) -> None:
    """``RANKBENCH_CRASH_AT="[SIGNAL/]POINT:GLOB[#N]"`` sends this process SIGNAL (default
    SIGKILL, as kill -9 does) the N-th (default first) time it reaches POINT for a file whose name
    matches GLOB: how the tests check that a kill at any write point loses no finished work.
    Points: ``mid-write`` (half a file's bytes are in its temporary file), ``before-publish`` (a
    folder is complete, not yet renamed into place). With ``RANKBENCH_CRASH_ONCE=FILE`` only the
    process that creates FILE dies: a worker killed once, its retry then runs through."""
    spec = os.environ.get("RANKBENCH_CRASH_AT")
    if not spec:
        return
    sig, _, where = spec.rpartition("/")
    want, _, rest = where.partition(":")
    pattern, _, nth = rest.partition("#")
    if want != point or not fnmatch.fnmatch(Path(path).name, pattern or "*"):
        return
    _CRASH_COUNT[spec] = _CRASH_COUNT.get(spec, 0) + 1
    if _CRASH_COUNT[spec] == int(nth or 1):
        once = os.environ.get("RANKBENCH_CRASH_ONCE")
        if once:      # one crash among all processes (a retried task must not die again): who makes the file
            try:
                os.close(os.open(once, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                return
        os.kill(os.getpid(), getattr(signal, sig or "SIGKILL"))


# ---------------------------------------------------------------------------------------------
# writing

def _storage_error(path: Path, e: OSError, what: str = "cannot write") -> StorageError:
    reason = e.strerror or str(e)
    hint = ""
    if isinstance(e, PermissionError):
        hint = ": make it writable, or write elsewhere (--reports for reports, RANKBENCH_HOME for the cache)"
    elif isinstance(e, (NotADirectoryError, FileExistsError)):
        hint = ": a file stands where a folder is needed"
    elif e.errno == 28:
        hint = ": free some disk space"
    return StorageError(f"{path}: {what} ({reason}){hint}")


def ensure_dir(path: Path, what: str) -> Path:
    """Create a folder (with the umask's modes) or say clearly why it cannot be one."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise StorageError(f"{path}: the {what} must be a folder, but a file is there")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise _storage_error(path, e, f"cannot create the {what}") from None
    return path


def check_writable(path: Path, what: str) -> Path:
    """ensure_dir, then prove a file can be written and removed there (before any work starts)."""
    ensure_dir(path, what)
    try:
        fd, tmp = tempfile.mkstemp(prefix=temp_prefix("probe"), suffix=".tmp", dir=path)
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        raise _storage_error(path, e, f"the {what} is not writable") from None
    return path


class _HeldLock:
    """One lock file as this process holds it: a thread lock (flock does not order the threads of
    one process) and the flock'ed descriptor, taken once however deep the nesting."""

    def __init__(self) -> None:
        self.thread = threading.RLock()
        self.depth = 0
        self.fd: int | None = None


_HELD: dict[str, _HeldLock] = {}
_HELD_GUARD = threading.Lock()


@contextlib.contextmanager
def locked(path: Path, waiting: Callable[[], None] | None = None) -> Iterator[None]:
    """An exclusive advisory lock (flock) on a lock file, held for the block. It is re-entrant in
    a process (a cell's run lock held while its first stage takes its own) and it orders threads
    too. Processes on other hosts see it where the filesystem carries flock (NFS does, as POSIX
    locks). ``waiting`` is called once if another process holds the lock, before blocking."""
    import fcntl

    path = Path(path)
    ensure_dir(path.parent, "folder")
    with _HELD_GUARD:
        held = _HELD.setdefault(str(path.absolute()), _HeldLock())
    with held.thread:
        if held.depth == 0:
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT, file_mode())
            except OSError as e:
                raise _storage_error(path, e) from None
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    if waiting is not None:
                        waiting()
                    fcntl.flock(fd, fcntl.LOCK_EX)
            except BaseException:
                os.close(fd)
                raise
            held.fd = fd
        held.depth += 1
        try:
            yield
        finally:
            held.depth -= 1
            if held.depth == 0:
                fd, held.fd = held.fd, None
                os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file beside path, fsync, then rename over it."""
    path = Path(path)
    ensure_dir(path.parent, "folder")
    try:
        fd, tmp = tempfile.mkstemp(prefix=temp_prefix(path.name), suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise _storage_error(path, e) from None
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), file_mode())
            if os.environ.get("RANKBENCH_CRASH_AT"):
                f.write(data[: len(data) // 2])
                f.flush()
                crash_point("mid-write", path)
                f.write(data[len(data) // 2:])
            else:
                f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(e, OSError):
            raise _storage_error(path, e) from None
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


@contextlib.contextmanager
def atomic_dir(final: Path, replace: bool = False) -> Iterator[Path]:
    """Build a directory under a temporary name and rename it into place only on success.

    If the directory exists already (another process finished it first), ours is discarded:
    content-addressed directories with the same name have the same content. With ``replace``
    (a forced rebuild), ours takes its place instead.
    """
    final = Path(final)
    ensure_dir(final.parent, "folder")
    try:
        tmp = Path(tempfile.mkdtemp(prefix=temp_prefix(final.name), suffix=".tmp", dir=final.parent))
        os.chmod(tmp, dir_mode())
    except OSError as e:
        raise _storage_error(final, e) from None
    try:
        yield tmp
        crash_point("before-publish", final)
        if replace and final.exists():
            old = Path(tempfile.mkdtemp(prefix=temp_prefix(final.name), suffix=".old.tmp", dir=final.parent))
            os.rename(final, old / "entry")
            os.rename(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
            return
        try:
            os.rename(tmp, final)
        except OSError:
            if not final.exists():
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
