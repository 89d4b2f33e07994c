"""Reading the committed results: one JSON per (suite, ranker, dataset) cell under reports/."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .config import Config, SuiteSpec
from .results import read_result, result_path


@dataclass(frozen=True)
class SuiteResults:
    suite: SuiteSpec
    cells: dict[tuple[str, str], dict]      # (ranker, dataset) -> result JSON; absent = not run
    orphans: tuple[Path, ...]               # result files of cells the suite no longer has

    def ok(self, ranker: str, dataset: str) -> dict | None:
        r = self.cells.get((ranker, dataset))
        return r if r and r.get("status") == "ok" else None


def load_results(config: Config, reports: Path, suite_name: str) -> SuiteResults:
    suite = config.suite(suite_name)
    cells = {}
    for d in suite.datasets:
        for r in suite.rankers:
            path = result_path(reports, suite_name, r, d)
            if path.exists():
                cells[(r, d)] = read_result(path)
    folder = reports / "results" / suite_name
    expected = {result_path(reports, suite_name, r, d).name for r in suite.rankers for d in suite.datasets}
    orphans = tuple(sorted(p for p in folder.glob("*.json") if p.name not in expected)) if folder.is_dir() else ()
    return SuiteResults(suite, cells, orphans)
