"""Result files: one JSON per (suite, ranker, dataset) cell under reports/results/, where it lies
and how it is read back (its shape checked, so a damaged file is an error naming it)."""
from __future__ import annotations

import json
from pathlib import Path

from .errors import DataError


def result_path(reports: Path, suite: str, ranker: str, dataset: str) -> Path:
    return reports / "results" / suite / f"{ranker}__{dataset}.json"


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
