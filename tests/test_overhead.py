"""The harness's own share of a suite's wall time (harness.overhead, reports/overhead.md)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_a_real_run_books_its_rankers_and_its_harness(toy, tmp_path):
    """The toy suite run as a user runs it, cold then warm: the rankers' seconds and the harness's
    items add up to the command's wall time, and a warm run has no ranker time at all."""
    from harness.overhead import markdown, run_once

    home = tmp_path / "home"
    cold = run_once(toy.config, "s", home, toy.reports)
    assert cold["cells"] == "cells: 4 ran"
    assert cold["ranker"]["rank"] > 0 and cold["ranker"]["build (index, encoding, export, training)"] > 0
    for item in ("evaluation", "report", "run processes: interpreter start", "run processes: config", "command start (interpreter, imports)"):
        assert cold["harness"][item] > 0, item
    assert cold["ranker_s"] + cold["harness_s"] == pytest.approx(cold["wall_s"], abs=0.02)
    assert sum(cold["harness"].values()) == pytest.approx(cold["harness_s"], rel=0.05, abs=0.1)
    for f in (toy.reports / "results" / "s").glob("*.json"):
        f.unlink()
    warm = run_once(toy.config, "s", home, toy.reports)
    assert warm["cells"] == "cells: 4 cached-run" and warm["ranker_s"] == 0 and warm["share"] == 1.0
    text = markdown({"machine": {"id": "x", "cpu": "cpu", "cores": 2, "memory_gib": 1}, "bar": 0.05,
                     "suites": {"s": {"cold": cold, "warm": warm}}})
    assert "| s | cold |" in text and "every run read from the cache" in text


@pytest.mark.golden
def test_overhead_report_is_its_json_and_meets_the_bar():
    from harness.overhead import markdown

    data = json.loads((ROOT / "reports" / "results" / "overhead.json").read_text())
    assert (ROOT / "reports" / "overhead.md").read_text() == markdown(data)
    assert set(data["suites"]) == {"smoke", "quick"}
    assert data["suites"]["quick"]["cold"]["share"] <= data["bar"] == 0.05
