"""Peak resident memory of this process during a block of code, and how busy the rest of the
machine was meanwhile (``OtherLoad``).

On Linux the kernel's high-water mark (VmHWM) is reset at the start of the block by writing 5
to /proc/self/clear_refs, so the peak is exact and covers native memory (the JVM, torch). Where
that is not allowed, a thread samples VmRSS every 5 ms.
"""
from __future__ import annotations

import re
import threading
import time
from pathlib import Path

_STATUS = Path("/proc/self/status")


def _field(name: str) -> int | None:
    try:
        m = re.search(rf"^{name}:\s+(\d+) kB", _STATUS.read_text(), re.M)
    except OSError:
        return None
    return int(m.group(1)) * 1024 if m else None


class PeakMemory:
    """``reset=False``: the peak since the process started (a process of the cell's own)."""

    def __init__(self, reset: bool = True):
        self.reset = reset
        self.start = 0
        self.peak = 0
        self.method = ""

    def __enter__(self):
        self.start = _field("VmRSS") or 0
        try:
            if self.reset:
                Path("/proc/self/clear_refs").write_text("5")
            elif _field("VmHWM") is None:
                raise OSError("no VmHWM")
            self.method = "VmHWM"
        except OSError:
            self.method = "sampled"
            self._stop = threading.Event()
            self._sampled = self.start
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self):
        while not self._stop.is_set():
            self._sampled = max(self._sampled, _field("VmRSS") or 0)
            time.sleep(0.005)

    def __exit__(self, *exc):
        if self.method == "VmHWM":
            self.peak = _field("VmHWM") or 0
        else:
            self._stop.set()
            self._thread.join()
            self.peak = self._sampled
        return False

    def as_dict(self) -> dict:
        mib = 2**20
        return {"peak_rss_mib": round(self.peak / mib, 1),
                "rss_increase_mib": round(max(self.peak - self.start, 0) / mib, 1),
                "memory_method": self.method}


# ---------------------------------------------------------------------------------------------
# how busy the rest of the machine was

def _system_busy_ticks() -> int | None:
    """Busy clock ticks of all CPUs since boot (user, nice, system, irq, softirq, steal)."""
    try:
        first = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    except OSError:
        return None
    if not first or first[0] != "cpu" or len(first) < 9:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in first[1:9])
    return user + nice + system + irq + softirq + steal


def _self_ticks() -> int | None:
    """This process's CPU clock ticks (every thread: user + system)."""
    try:
        text = Path("/proc/self/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()
    return int(fields[11]) + int(fields[12])


class OtherLoad:
    """How many cores other processes kept busy, on average, during a block of code.

    Latency measured while the machine is busy is not this ranker's latency: the check compares
    it with a baseline only when the machine was quiet (``[check] latency_busy_cores``). Read from
    /proc/stat (all CPUs) less this process's own ticks; None where /proc is not there.
    """

    # A shorter block is topped up by sleeping: clock ticks are 10 ms coarse. Over 0.1 s on 2 CPUs
    # the readings are off by at most 6 ticks, under the slack (4) plus 0.5 cores (5 ticks).
    MIN_WINDOW_S = 0.1

    def __enter__(self):
        self._t0, self._sys0, self._self0 = time.perf_counter(), _system_busy_ticks(), _self_ticks()
        self.cores = None
        return self

    def __exit__(self, *exc):
        import os

        if exc[0] is not None or self._sys0 is None:
            return False
        short = self.MIN_WINDOW_S - (time.perf_counter() - self._t0)
        if short > 0:
            time.sleep(short)     # while this process sleeps, every busy tick is another's
        wall = time.perf_counter() - self._t0
        sys1, self1 = _system_busy_ticks(), _self_ticks()
        if None not in (self._self0, sys1, self1):
            hz = os.sysconf("SC_CLK_TCK")
            # each reading is up to a tick off per CPU: that much is not counted as load
            slack = (os.cpu_count() or 1) + 2
            others = max((sys1 - self._sys0) - (self1 - self._self0) - slack, 0) / hz
            self.cores = round(others / wall, 2)
        return False
