"""``rankbench bench``: the hot-path micro-benchmarks (benchmarks/, pytest-benchmark), saved as
pytest-benchmark JSON under reports/benchmarks/<machine id>/, and compared with the last run
saved on the same machine: ``--compare`` fails when a benchmark's median is slower by more than
bench.toml's ``[check] benchmark_slowdown``. Runs from another machine are never compared (the
machine id is the one every report's provenance gives).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from .errors import ConfigError


def storage(reports: Path, machine_id: str) -> Path:
    return reports / "benchmarks" / machine_id


def saved_runs(folder: Path) -> list[Path]:
    """pytest-benchmark's saved JSONs in a storage folder, oldest first (their names start with a
    counter: 0001_..., 0002_...)."""
    return sorted(folder.glob("*/[0-9][0-9][0-9][0-9]_*.json")) if folder.is_dir() else []


def check_comparable(previous: Path, machine_id: str, threads: int) -> None:
    """Refuse a comparison across machines or thread counts: the figures would not mean anything."""
    try:
        info = json.loads(previous.read_text(encoding="utf-8"))["machine_info"]
    except (OSError, KeyError, json.JSONDecodeError) as e:
        raise ConfigError(f"{previous}: not a pytest-benchmark result ({e})") from None
    theirs = info.get("rankbench_machine")
    if theirs != machine_id:
        raise ConfigError(f"{previous} was measured on machine {theirs}, this is {machine_id}: "
                          f"benchmarks compare on the same machine only")
    if info.get("rankbench_threads") != threads:
        raise ConfigError(f"{previous} ran with {info.get('rankbench_threads')} threads, this run with {threads}: "
                          f"pass --threads {info.get('rankbench_threads')} to compare")


def command(root: Path, folder: Path, compare: bool, slowdown: float, save: bool, select: str | None) -> list[str]:
    cmd = [sys.executable, "-m", "pytest", str(root / "benchmarks"), "-q", "-p", "no:cacheprovider",
           "--benchmark-only", f"--benchmark-storage=file://{folder}", "--benchmark-sort=name",
           "--benchmark-columns=min,median,mean,stddev,rounds,iterations", "--benchmark-min-rounds=5",
           "--benchmark-warmup=on", "--benchmark-warmup-iterations=1"]
    if save:
        cmd.append("--benchmark-autosave")
    if compare:
        cmd += ["--benchmark-compare", f"--benchmark-compare-fail=median:{100 * slowdown:g}%"]
    if select:
        cmd += ["-k", select]
    return cmd


def run(config, reports: Path, compare: bool = False, save: bool = True, threads: int = 2,
        select: str | None = None, slowdown: float | None = None) -> int:
    from .provenance import machine

    if threads < 1:
        raise ConfigError(f"--threads {threads}: at least 1 (benchmarks fix their thread count)")
    mid = machine()["id"]
    folder = storage(reports, mid)
    slowdown = config.check.benchmark_slowdown if slowdown is None else slowdown
    if compare:
        previous = saved_runs(folder)
        if not previous:
            raise ConfigError(f"no saved benchmark run for machine {mid} under {folder}: run `rankbench bench` "
                              f"first, then `rankbench bench --compare`")
        check_comparable(previous[-1], mid, threads)
        print(f"comparing with {previous[-1].relative_to(reports)} (fails if a median is more than "
              f"{100 * slowdown:g}% slower)", file=sys.stderr)
    # benchmarks/conftest.py decides offline and quiets the libraries; here only the threads
    env = {**os.environ, "RANKBENCH_BENCH_THREADS": str(threads), "OMP_NUM_THREADS": str(threads)}
    root = config.root
    proc = subprocess.run(command(root, folder, compare, slowdown, save, select), cwd=root, env=env)
    if save and proc.returncode == 0:
        latest = saved_runs(folder)
        if latest:
            print(f"saved {latest[-1]}", file=sys.stderr)
    return proc.returncode
