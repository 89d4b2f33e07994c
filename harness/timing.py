"""Where a suite's wall time goes: the rankers' own work and the harness's, added up per process.

``ranker(name, seconds)`` books time spent inside the rankers (starting their runtime, building
what they load, prepare, rank, the latency queries); ``phase(name)`` times a block of the
harness's own work (evaluating, writing results, the report, a run's process starting). With
``RANKBENCH_TIMING=FILE``, ``rankbench run`` writes both to FILE when it ends
(scripts/overhead.py reads it: reports/overhead.md).
"""
from __future__ import annotations

import json
import os
import time
from contextlib import contextmanager
from pathlib import Path

RANKER: dict[str, float] = {}
HARNESS: dict[str, float] = {}


def ranker(name: str, seconds: float) -> None:
    RANKER[name] = RANKER.get(name, 0.0) + max(float(seconds or 0.0), 0.0)


def harness(name: str, seconds: float) -> None:
    HARNESS[name] = HARNESS.get(name, 0.0) + max(float(seconds or 0.0), 0.0)


@contextmanager
def phase(name: str):
    t0 = time.perf_counter()
    try:
        yield
    finally:
        harness(name, time.perf_counter() - t0)


def dump(wall_s: float) -> None:
    """Write what was booked to $RANKBENCH_TIMING, when it is set."""
    target = os.environ.get("RANKBENCH_TIMING")
    if not target:
        return
    data = {"wall_s": round(wall_s, 3), "ranker": {k: round(v, 3) for k, v in sorted(RANKER.items())},
            "harness": {k: round(v, 3) for k, v in sorted(HARNESS.items())}}
    Path(target).write_text(json.dumps(data, indent=1) + "\n")
