"""The import-linter contracts of pyproject.toml: one direction of dependencies (core <- rankers
<- config <- training <- runner <- report, check, compare <- cli) and no import cycle inside a
package, function-local and TYPE_CHECKING imports counted. Each broken case below is the
project's own code with one import added, so the contracts are shown to fail."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

LINT = Path(sys.executable).with_name("lint-imports")


def _lint(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(LINT), "--no-cache"], cwd=root, capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(root)})


def test_the_project_keeps_its_layers_and_has_no_import_cycle():
    out = _lint(ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Contracts: 2 kept, 0 broken." in out.stdout


@pytest.mark.parametrize("module, line, broken", [
    # a ranker reaching up to the runner: the circle the issue found (rankers.base -> harness.recipes)
    ("rankers/base.py", "from harness.runner import Runner", "layers"),
    # a function-local upward import counts too
    ("harness/config.py", "def _late():\n    from training.recipes import TrainedModels", "layers"),
    # inside the core layer, where siblings may import each other, a cycle does not
    ("harness/cache.py", "def _late():\n    from harness.data import open_dataset", "acyclic"),
])
def test_an_upward_import_or_a_cycle_breaks_a_contract(module, line, broken, tmp_path):
    for pkg in ("harness", "rankers", "training"):
        shutil.copytree(ROOT / pkg, tmp_path / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    path = tmp_path / module
    path.write_text(path.read_text() + "\n\n" + line + "\n")
    out = _lint(tmp_path)
    assert out.returncode == 1, out.stdout
    assert "Contracts: 1 kept, 1 broken." in out.stdout
    name = {"layers": "core <- rankers", "acyclic": "no import cycle"}[broken]
    text = " ".join(out.stdout.split())        # a long contract name wraps
    assert f"{name}" in text and "BROKEN" in text.split(name, 1)[1].split("KEPT")[0], out.stdout
