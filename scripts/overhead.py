"""Measure the harness's own share of the smoke and quick suites' wall time, cold and warm, and
write reports/overhead.md (and reports/results/overhead.json). See harness/overhead.py.

    .venv/bin/python scripts/overhead.py [--suite smoke --suite quick]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harness.overhead import measure, write  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--suite", action="append", help="suite to measure (repeatable; default: smoke and quick)")
    p.add_argument("--config", default=str(ROOT / "bench.toml"))
    p.add_argument("--keep", default=None, help="leave each suite's cache in KEEP/SUITE (a new folder)")
    args = p.parse_args()
    data = measure(Path(args.config).resolve(), args.suite or ["smoke", "quick"],
                   Path(args.keep).resolve() if args.keep else None)
    print(f"wrote {write(ROOT / 'reports', data)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
