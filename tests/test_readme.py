"""The README's "From Python" section runs as shown: its Python blocks, in order, print its text
blocks; its own ranker, named in bench.toml by "module:Class", gives what the API gives."""
from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from conftest import ROOT

pytestmark = pytest.mark.jvm      # the example compares Lucene's BM25 with bm25s


def _section() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index("## From Python\n")
    end = text.index("\n## ", start + 1)
    return text[start:end]


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", _section(), flags=re.S)


def _modules(tmp_path) -> list[str]:
    """Write the blocks that start with "# NAME.py" as modules; return the others (the script)."""
    script = []
    for block in _blocks("python"):
        first = block.splitlines()[0]
        if re.fullmatch(r"# \w+\.py", first):
            (tmp_path / first[2:]).write_text(block)
        else:
            script.append(block)
    return script


def test_the_python_examples_print_what_the_readme_shows(tmp_path, rankbench_home):
    script = _modules(tmp_path)
    assert len(script) == 2 and (tmp_path / "myrankers.py").exists()
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "RANKBENCH_HOME": str(rankbench_home)}
    out = subprocess.run([sys.executable, "-c", "\n".join(script)], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout == "".join(_blocks("text")), out.stdout


def test_the_own_ranker_named_in_bench_toml_gives_what_the_api_gives(tmp_path, rankbench_home, monkeypatch):
    import tomllib

    from harness.api import Bench
    from harness.config import parse_config
    from harness.files import read_toml

    _modules(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    raw = read_toml(ROOT / "bench.toml")
    (block,) = _blocks("toml")
    added = tomllib.loads(block)["rankers"]
    assert added["overlap-rerank-bm25s"]["kind"] == "myrankers:TermOverlap"
    raw["rankers"] = {**raw["rankers"], **added}
    bench = Bench(parse_config(raw, ROOT / "bench.toml"))
    table = bench.evaluate(["overlap-rerank-bm25s"], "scifact", measures=["nDCG@10"]).aggregate
    shown = re.search(r"overlap-rerank-bm25s\s+([0-9.]+)", _blocks("text")[-1]).group(1)
    assert f"{table['nDCG@10'][0]:.4f}" == shown

    from myrankers import TermOverlap

    inst = bench._runner.instance("overlap-rerank-bm25s")
    assert type(inst) is TermOverlap and inst.fingerprint_inputs(bench._runner.dataset("scifact"))["code"]
