"""Reading the committed results: one JSON per (suite, ranker, dataset) cell under reports/."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .config import Config, SuiteSpec
from .errors import DataError
from .runner import result_path


@dataclass(frozen=True)
class SuiteResults:
    suite: SuiteSpec
    cells: dict[tuple[str, str], dict]      # (ranker, dataset) -> result JSON; absent = not run
    orphans: tuple[Path, ...]               # result files of cells the suite no longer has

    def ok(self, ranker: str, dataset: str) -> dict | None:
        r = self.cells.get((ranker, dataset))
        return r if r and r.get("status") == "ok" else None


# what a report reads of an "ok" result: (key path, type)
_OK_SHAPE = ((("measures", "aggregate"), dict), (("measures", "per_query"), dict), (("efficiency",), dict),
             (("dataset_info",), dict), (("provenance", "machine", "id"), str), (("ranker_config",), dict))


def read_result(path: Path) -> dict:
    """A result JSON, its shape checked: a truncated or hand-edited file is an error naming it
    and what it lacks, never a traceback in the report."""
    from .files import read_text

    try:
        result = json.loads(read_text(path))
    except json.JSONDecodeError as e:
        raise DataError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None
    fix = f"rerun the cell (`rankbench run {path.parent.name}`) or delete the file"
    if not isinstance(result, dict) or result.get("status") not in ("ok", "n/a"):
        raise DataError(f"{path}: not a rankbench result (its status must be \"ok\" or \"n/a\"); {fix}")
    if result["status"] == "ok":
        for keys, tp in _OK_SHAPE:
            value = result
            for k in keys:
                value = value.get(k) if isinstance(value, dict) else None
            if not isinstance(value, tp):
                raise DataError(f"{path}: {'.'.join(keys)} is missing or not a {tp.__name__}; {fix}")
        for m, v in result["measures"]["aggregate"].items():
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise DataError(f"{path}: measures.aggregate.{m} = {v!r} is not a number; {fix}")
    return result


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


def results_frame(config: Config, reports: Path, suite_name: str, per_query: bool = False):
    """The suite's results as a pandas DataFrame (one row per cell and measure, or per query)."""
    import pandas as pd

    res = load_results(config, reports, suite_name)
    rows = []
    for (r, d), cell in res.cells.items():
        if cell.get("status") != "ok":
            continue
        if per_query:
            for m, values in cell["measures"]["per_query"].items():
                rows += [{"ranker": r, "dataset": d, "measure": m, "query": q, "value": v}
                         for q, v in values.items()]
        else:
            rows += [{"ranker": r, "dataset": d, "measure": m, "value": v}
                     for m, v in cell["measures"]["aggregate"].items()]
    return pd.DataFrame(rows)
