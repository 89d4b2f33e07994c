"""The command line: help everywhere, clear errors, exit codes."""
import subprocess
import sys

import pytest

from conftest import ROOT
from harness.cli import COMMANDS, main


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as e:
        main([command, "--help"])
    assert e.value.code == 0
    assert "usage: rankbench " + command in capsys.readouterr().out


def test_the_installed_entry_point_runs():
    out = subprocess.run([sys.executable, "-m", "harness.cli", "ls", "suites"], cwd=ROOT,
                         capture_output=True, text=True)
    assert out.returncode == 0
    assert "smoke" in out.stdout and "quick" in out.stdout


def test_unknown_suite_names_the_nearest(capsys):
    assert main(["run", "quik"]) == 2
    assert 'unknown suite "quik" (did you mean "quick"?)' in capsys.readouterr().err


def test_unknown_ranker_filter(capsys):
    assert main(["run", "smoke", "--ranker", "bm52"]) == 2
    assert 'unknown ranker of suite smoke "bm52" (did you mean "bm25"?)' in capsys.readouterr().err


def test_ls_lists_everything(capsys):
    assert main(["ls"]) == 0
    out = capsys.readouterr().out
    for word in ("datasets:", "scifact-irds", "rankers:", "minilm-rerank-bm25run", "suites:", "measure sets",
                 "ranker kinds:", "bi-encoder"):
        assert word in out


def test_validate_parses_all_shipped_data(capsys):
    assert main(["validate"]) == 0
    out = capsys.readouterr().out
    assert "dl19             OK  43 queries, 9260 judgments, 16836 docs" in out


def test_check_without_a_baseline_says_how_to_make_one(tmp_path, capsys):
    assert main(["check", "smoke", "--reports", str(tmp_path)]) == 2
    assert "rankbench accept smoke" in capsys.readouterr().err
