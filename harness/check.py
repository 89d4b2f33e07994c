"""Regression checks: results against accepted baselines, and against published figures.

Verdicts per cell and measure (pyserini 2CR / Anserini --verify style):
- OK: equal to the baseline (to its 6 stored decimals); for latency, no slower.
- OKISH: within tolerance, or better than the baseline (accept it to move the baseline).
- FAIL: worse than the baseline by more than the tolerance, or a result missing.
Latency is compared only on the machine that set the baseline; elsewhere it is SKIP.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .config import Config
from .errors import ConfigError, DataError
from .files import atomic_write_text
from .suite_results import load_results
from .verdicts import effectiveness_verdict, latency_verdict, published_verdict

BASELINES = "baselines.toml"
LATENCY_KEY = "latency_p50_ms"


@dataclass(frozen=True)
class Verdict:
    cell: str            # "ranker/dataset"
    key: str             # measure string, latency_p50_ms, or "published nDCG@10"
    verdict: str         # OK | OKISH | FAIL | SKIP | NEW
    current: float | None
    baseline: float | None
    note: str = ""

    def line(self) -> str:
        cur = "—" if self.current is None else f"{self.current:.4f}"
        base = "—" if self.baseline is None else f"{self.baseline:.4f}"
        delta = ""
        if self.current is not None and self.baseline is not None:
            delta = f" (Δ {self.current - self.baseline:+.4f})"
        note = f"  {self.note}" if self.note else ""
        return f"{self.verdict:<5} {self.cell:<40} {self.key:<22} {cur} vs {base}{delta}{note}"


def read_baselines(reports: Path) -> dict:
    """reports/baselines.toml, its shape checked: [SUITE.machine] id, and [SUITE.cells."R/D"]
    tables of numbers. An error names the file and the key."""
    from .files import read_toml

    path = reports / BASELINES
    if not path.exists():
        return {}
    data = read_toml(path)
    for suite, table in data.items():
        w = f"{path}: [{suite}]"
        if not isinstance(table, dict):
            raise DataError(f"{w} must be a table with machine and cells, found {table!r}")
        for key in table:
            if key not in ("machine", "cells"):
                raise DataError(f"{w}: unknown key {key!r}; a suite's baseline has machine and cells")
        machine = table.get("machine", {})
        if not isinstance(machine, dict) or not isinstance(machine.get("id"), str):
            raise DataError(f"{w}.machine needs id = \"...\" (the machine whose latency is the baseline)")
        cells = table.get("cells", {})
        if not isinstance(cells, dict):
            raise DataError(f"{w}.cells must be a table of cells, found {cells!r}")
        for cell, values in cells.items():
            wc = f'{path}: [{suite}.cells."{cell}"]'
            if "/" not in cell:
                raise DataError(f"{wc}: a cell is named \"RANKER/DATASET\"")
            if not isinstance(values, dict):
                raise DataError(f"{wc} must be a table of measure = number, found {values!r}")
            for key, value in values.items():
                if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
                    raise DataError(f"{wc} {key} = {value!r} must be a number (accept the suite again "
                                    f"with `rankbench accept {suite}` to rewrite it)")
    return data


def check_suite(config: Config, reports: Path, suite_name: str) -> list[Verdict]:
    results = load_results(config, reports, suite_name)
    suite = results.suite
    base_all = read_baselines(reports)
    base = base_all.get(suite_name)
    if base is None:
        raise ConfigError(f"{reports / BASELINES}: no baseline for suite {suite_name!r}; "
                          f"accept the current results with `rankbench accept {suite_name}`")
    machine = base.get("machine", {}).get("id")
    tol = config.check
    out: list[Verdict] = []
    cells = base.get("cells", {})
    for d in suite.datasets:
        for r in suite.rankers:
            name = f"{r}/{d}"
            expected = cells.get(name)
            cell = results.cells.get((r, d))
            if expected is None:
                if cell and cell.get("status") == "ok":
                    out.append(Verdict(name, "*", "NEW", None, None, "no baseline yet: accept to add it"))
                continue
            if cell is None or cell.get("status") != "ok":
                why = "no result (run the suite)" if cell is None else f"status {cell.get('status')}: {cell.get('reason', '')}"
                out.append(Verdict(name, "*", "FAIL", None, None, why))
                continue
            agg = cell["measures"]["aggregate"]
            for key, value in expected.items():
                if key == LATENCY_KEY:
                    lat = (cell["efficiency"].get("latency_ms") or {}).get("p50")
                    cur_machine = cell["provenance"]["machine"]["id"]
                    if lat is None:
                        continue
                    busy = cell["efficiency"].get("other_load_cores")
                    if cur_machine != machine:
                        out.append(Verdict(name, key, "SKIP", lat, value,
                                           f"machine {cur_machine} is not the baseline's {machine}"))
                    elif busy is not None and busy > tol.latency_busy_cores:
                        out.append(Verdict(name, key, "SKIP", lat, value,
                                           f"timed while other processes kept {busy:g} cores busy (more than "
                                           f"[check] latency_busy_cores = {tol.latency_busy_cores:g}): rerun "
                                           f"on a quiet machine to compare"))
                    else:
                        out.append(Verdict(name, key, latency_verdict(lat, value, tol.latency, tol.latency_slack_ms),
                                           lat, value, f"tolerance +{tol.latency:.0%} + {tol.latency_slack_ms:g} ms"))
                    continue
                if key not in agg:
                    out.append(Verdict(name, key, "FAIL", None, value, "measure missing from the result"))
                    continue
                out.append(Verdict(name, key, effectiveness_verdict(agg[key], value, tol.effectiveness),
                                   agg[key], value, f"tolerance {tol.effectiveness:g}"))
    for e in config.expected:
        if e.ranker in suite.rankers and e.dataset in suite.datasets:
            cell = results.ok(e.ranker, e.dataset)
            name = f"{e.ranker}/{e.dataset}"
            if cell is None:
                out.append(Verdict(name, f"published {e.measure}", "FAIL", None, e.value, "no result"))
                continue
            got = cell["measures"]["aggregate"].get(e.measure)
            out.append(Verdict(name, f"published {e.measure}", published_verdict(got, e.value, e.tolerance), got, e.value,
                               f"tolerance {e.tolerance:g}, {e.source}"))
    return out


def accept_suite(config: Config, reports: Path, suite_name: str) -> Path:
    """Write the suite's current results into baselines.toml (other suites are kept)."""
    import tomli_w

    results = load_results(config, reports, suite_name)
    cells = {}
    machines = set()
    for d in results.suite.datasets:
        for r in results.suite.rankers:
            c = results.ok(r, d)
            if c is None:
                continue
            entry = {m: round(v, 6) for m, v in c["measures"]["aggregate"].items()}
            lat = (c["efficiency"].get("latency_ms") or {}).get("p50")
            if lat is not None:
                entry[LATENCY_KEY] = round(lat, 3)
            cells[f"{r}/{d}"] = entry
            machines.add(c["provenance"]["machine"]["id"])
    if not cells:
        raise ConfigError(f"suite {suite_name!r} has no results to accept: run it first")
    if len(machines) > 1:
        raise ConfigError(f"suite {suite_name!r} has results from {len(machines)} machines; rerun it on one "
                          f"before accepting (latency baselines are per machine)")
    some = next(c for c in results.cells.values() if c.get("status") == "ok")
    m = some["provenance"]["machine"]
    data = read_baselines(reports)
    data[suite_name] = {
        "machine": {"id": m["id"], "cpu": m["cpu"], "cores": m["cores"], "memory_gib": m["memory_gib"]},
        "cells": cells,
    }
    path = reports / BASELINES
    header = ("# Accepted results, written by `rankbench accept SUITE`; `rankbench check SUITE` compares\n"
              "# against them. Review changes to this file like code.\n\n")
    atomic_write_text(path, header + tomli_w.dumps(dict(sorted(data.items()))))
    return path
