"""`rankbench bench`: the micro-benchmarks run, their pytest-benchmark JSON is saved per machine,
and `--compare` reads the last saved run, passes when nothing got slower and fails when a median
got slower than the configured bound. A few cheap benchmarks only: this checks the mechanism,
not the speed (the figures live in reports/benchmarks/)."""
from __future__ import annotations

import json

import pytest

from conftest import ROOT

pytest.importorskip("pytest_benchmark")
pytestmark = pytest.mark.bench

SELECT = "tokenize or evaluate or bm25s"


def _bench(tmp_path, *extra) -> int:
    from harness.cli import main

    return main(["bench", "--reports", str(tmp_path), "-k", SELECT, "--config", str(ROOT / "bench.toml"), *extra])


def _saved(tmp_path):
    from harness.bench import saved_runs
    from harness.provenance import machine

    return saved_runs(tmp_path / "benchmarks" / machine()["id"])


def test_bench_saves_and_compares_on_this_machine(tmp_path, capsys):
    from harness.provenance import machine

    assert _bench(tmp_path, "--compare") == 2
    assert "no saved benchmark run for machine" in capsys.readouterr().err
    assert _bench(tmp_path) == 0
    first = _saved(tmp_path)
    assert len(first) == 1
    data = json.loads(first[0].read_text())
    names = {b["name"] for b in data["benchmarks"]}
    assert names == {"test_tokenize_pairs[dl19]", "test_tokenize_pairs[scifact]", "test_evaluate_a_run",
                     "test_bm25_query_batch[bm25s]"}
    assert data["machine_info"]["rankbench_machine"] == machine()["id"]
    assert data["machine_info"]["rankbench_threads"] == 2
    assert all(b["stats"]["rounds"] >= 5 and b["stats"]["median"] > 0 for b in data["benchmarks"])

    # the same code again, a generous bound: passes, and is saved as the second run
    assert _bench(tmp_path, "--compare", "--max-slowdown", "3") == 0
    assert len(_saved(tmp_path)) == 2

    # a last run 1000 times faster than anything this machine can do: the comparison must fail
    last = _saved(tmp_path)[-1]
    doctored = json.loads(last.read_text())
    for b in doctored["benchmarks"]:
        for key in ("min", "max", "mean", "median", "stddev", "iqr", "q1", "q3", "ld15iqr", "hd15iqr"):
            if isinstance(b["stats"].get(key), (int, float)):
                b["stats"][key] /= 1000
    last.write_text(json.dumps(doctored))
    assert _bench(tmp_path, "--compare", "--no-save") == 1
    assert len(_saved(tmp_path)) == 2          # a failed comparison saves nothing


def test_bench_refuses_another_machines_run(tmp_path):
    from harness.bench import check_comparable
    from harness.errors import ConfigError

    path = tmp_path / "0001_x.json"
    path.write_text(json.dumps({"machine_info": {"rankbench_machine": "elsewhere", "rankbench_threads": 2}}))
    with pytest.raises(ConfigError, match="measured on machine elsewhere, this is here: benchmarks compare on the same machine only"):
        check_comparable(path, "here", 2)
    path.write_text(json.dumps({"machine_info": {"rankbench_machine": "here", "rankbench_threads": 4}}))
    with pytest.raises(ConfigError, match="ran with 4 threads, this run with 2: pass --threads 4"):
        check_comparable(path, "here", 2)
    path.write_text("{}")
    with pytest.raises(ConfigError, match="not a pytest-benchmark result"):
        check_comparable(path, "here", 2)
