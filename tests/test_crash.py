"""A kill -9 at every write point loses no finished cell and leaves nothing half-written that a
later check trusts (SQLite's crash tests, on a small scale).

Each case runs `rankbench run` in a child process that kills itself with SIGKILL at one write
point (``RANKBENCH_CRASH_AT``, see harness/files.py): half-way through a result JSON, the report,
a plot, a cached run or its entry marker, or with a cache entry complete but not yet renamed into
place. Then, in this process: every result file left is whole, `report --check` does not call the
interrupted report up to date, a plain re-run reuses every finished cell, and `report --check`
passes; no temporary file is left anywhere.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys

import pytest

from conftest import ROOT, TOY_CONFIG, ToyProject, default_sigint

CELLS = ["first", "bm25s", "oracle-first", "random-first"]

# (write point, how far the first run gets: the cells whose result is finished when it dies)
POINTS = [
    ("before-publish:*#3", 1),          # cache entries: first's run, bm25s' index, bm25s' run
    ("mid-write:run.trec.gz#2", 1),     # bm25s' run, half written into its cache entry
    ("mid-write:entry.json#3", 1),      # bm25s' run entry's marker
    ("mid-write:*__toy.json#3", 2),     # the third result JSON
    ("mid-write:s.md", 4),              # the report
    ("mid-write:s-toy.png", 4),         # a plot
    ("mid-write:s-toy.svg", 4),
]


def _child(toy, home, crash: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "RANKBENCH_HOME": str(home), "RANKBENCH_CRASH_AT": crash, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "harness.cli", *args, "--config", str(toy.config)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, preexec_fn=default_sigint)


def _finished(toy) -> list[str]:
    """Cells whose result JSON is there; every JSON there must be whole."""
    done = []
    for path in sorted((toy.reports / "results" / "s").glob("*.json")):
        result = json.loads(path.read_text())          # a half-written result would fail here
        assert result["status"] == "ok"
        done.append(result["ranker"])
    return done


def _temporaries(*roots) -> list[str]:
    return [str(p) for root in roots for p in root.rglob("*") if ".rbtmp-" in p.name]


@pytest.fixture(scope="module")
def clean(tmp_path_factory, toy_source):
    """The measures of an uninterrupted run, to compare the resumed ones with."""
    project = ToyProject(tmp_path_factory.mktemp("clean") / "project")
    shutil.copytree(toy_source, project.data)
    project.config.write_text(TOY_CONFIG)
    home = project.root / "home"
    out = _child(project, home, "", "run", "s", "--no-progress")
    assert out.returncode == 0, out.stderr
    return {r: json.loads((project.reports / "results" / "s" / f"{r}__toy.json").read_text())["measures"]
            for r in CELLS}


@pytest.mark.parametrize("crash, finished", POINTS, ids=[p[0] for p in POINTS])
def test_a_kill_at_a_write_point_loses_no_finished_cell(crash, finished, toy, clean, tmp_path, capsys, monkeypatch):
    home = tmp_path / "home"
    out = _child(toy, home, crash, "run", "s", "--no-progress")
    assert out.returncode == -signal.SIGKILL, (out.returncode, out.stderr)
    done = _finished(toy)
    assert done == sorted(CELLS[:finished]), (done, out.stderr)
    left = _temporaries(toy.reports, home)
    assert left, "the kill should have left a temporary behind, for the next run to sweep"
    # what the interrupted run left is not taken for an up-to-date report
    monkeypatch.setenv("RANKBENCH_HOME", str(home))
    code, text = toy.cli("report", "s", "--check", capsys=capsys)
    assert code == 1 and "up to date" not in text, text
    # a plain re-run: finished cells are reused, the rest run, the report is whole
    code, text = toy.cli("run", "s", "--no-progress", capsys=capsys)
    assert code == 0 and "Traceback" not in text, text
    for r in CELLS:
        status = "up-to-date" if r in done else ("ran", "cached-run")
        line = next(x for x in text.splitlines() if x.startswith("[s ") and f"] {r} on toy: " in x)
        assert line.split(": ", 1)[1].split(" (")[0] in status, line
    code, text = toy.cli("report", "s", "--check", capsys=capsys)
    assert code == 0, text
    assert _temporaries(toy.reports, home) == []
    for r in CELLS:
        got = json.loads((toy.reports / "results" / "s" / f"{r}__toy.json").read_text())["measures"]
        assert got == clean[r]


def test_an_interrupt_mid_write_keeps_the_old_file_and_says_how_to_resume(toy, tmp_path, capsys, monkeypatch):
    """Ctrl-C while a result is half written: exit 130, the message, no temporary left behind
    (the writer removes its own), and the result that was there before is intact."""
    home = tmp_path / "home"
    monkeypatch.setenv("RANKBENCH_HOME", str(home))
    code, _ = toy.cli("run", "s", "--no-progress", capsys=capsys)
    assert code == 0
    before = {p.name: p.read_bytes() for p in (toy.reports / "results" / "s").glob("*.json")}
    out = _child(toy, home, "SIGINT/mid-write:*__toy.json#2", "run", "s", "--no-progress", "--force")
    assert out.returncode == 130, out.stderr
    assert "interrupted: finished cells are saved; run the same command again to resume" in out.stderr
    assert "Traceback" not in out.stderr
    assert _temporaries(toy.reports, home) == []
    after = {p.name: p.read_bytes() for p in (toy.reports / "results" / "s").glob("*.json")}
    assert set(after) == set(before)
    for name, data in after.items():
        json.loads(data)                  # whole: the old one, or the new one


def test_a_kill_while_accepting_keeps_the_old_baselines(toy, tmp_path, capsys, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("RANKBENCH_HOME", str(home))
    assert toy.cli("run", "s", "--no-progress", "--no-report", capsys=capsys)[0] == 0
    assert toy.cli("accept", "s", capsys=capsys)[0] == 0
    before = (toy.reports / "baselines.toml").read_bytes()
    out = _child(toy, home, "mid-write:baselines.toml", "accept", "s")
    assert out.returncode == -signal.SIGKILL
    assert (toy.reports / "baselines.toml").read_bytes() == before
    code, text = toy.cli("check", "s", capsys=capsys)
    assert code == 0, text


def test_two_runs_at_once_on_one_cache_and_one_reports_folder(toy, clean, tmp_path, capsys, monkeypatch):
    """Concurrent runs never see each other's half-built files: each cache entry is published once
    (the second builder's copy is discarded), each result is whole, and neither sweeps the other's
    live temporaries."""
    home = tmp_path / "home"
    env = {**os.environ, "RANKBENCH_HOME": str(home)}
    cmd = [sys.executable, "-m", "harness.cli", "run", "s", "--no-progress", "--config", str(toy.config)]
    procs = [subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert all("Traceback" not in err and "removed" not in err for _, err in outs)
    assert _finished(toy) == sorted(CELLS)
    assert _temporaries(toy.reports, home) == []
    assert len(list(home.glob("runs/*/*/entry.json"))) == 4
    monkeypatch.setenv("RANKBENCH_HOME", str(home))
    code, text = toy.cli("report", "s", "--check", capsys=capsys)
    assert code == 0, text
    for r in CELLS:
        got = json.loads((toy.reports / "results" / "s" / f"{r}__toy.json").read_text())["measures"]
        assert got == clean[r]
