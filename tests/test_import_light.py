"""Importing the harness (and listing or validating a config) loads no heavy library."""
import subprocess
import sys

from conftest import ROOT

HEAVY = ("torch", "onnxruntime", "ir_datasets", "transformers", "sentence_transformers", "jnius", "pyserini",
         "faiss", "bm25s")


def _loaded_after(code: str) -> list[str]:
    probe = (f"{code}\nimport sys\n"
             f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    return [m for m in out.stdout.strip().split(",") if m]


def test_import_harness_loads_no_torch_onnxruntime_or_ir_datasets():
    loaded = _loaded_after("import harness, harness.cli, harness.config, harness.runner, harness.report, "
                           "harness.check, harness.data, harness.measures, rankers, rankers.base, "
                           "rankers.bm25, rankers.biencoder, rankers.runfile, rankers.sanity")
    assert loaded == []


def test_parsing_the_whole_config_loads_no_heavy_library():
    # every ranker's parameters are validated, which imports every ranker module
    loaded = _loaded_after("from harness.config import load_config; load_config('bench.toml')")
    assert loaded == []


def test_the_import_check_sees_a_heavy_import():
    # the probe itself must be able to fail
    assert "torch" in _loaded_after("import torch")
