"""Peak resident memory of this process during a block of code.

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
    def __init__(self):
        self.start = 0
        self.peak = 0
        self.method = ""

    def __enter__(self):
        self.start = _field("VmRSS") or 0
        try:
            Path("/proc/self/clear_refs").write_text("5")
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
