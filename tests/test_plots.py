"""Pareto plots on the committed results: the frontier is exactly the non-dominated rankers, the
files are written (PNG and SVG, the same bytes twice), the report embeds them, and
`rankbench report --check` fails while one is missing."""
from __future__ import annotations

import shutil

import pytest

from conftest import ROOT

pytest.importorskip("matplotlib")


@pytest.fixture
def reports(tmp_path):
    out = tmp_path / "reports"
    shutil.copytree(ROOT / "reports" / "results", out / "results")
    return out


def _points(config, suite: str, dataset: str):
    from harness.plots import points
    from harness.report import LETTERS
    from harness.suite_results import load_results

    res = load_results(config, ROOT / "reports", suite)
    cells = [(r, res.ok(r, dataset)) for r in res.suite.rankers if res.ok(r, dataset)]
    letters = {r: LETTERS[i] for i, (r, _) in enumerate(cells)}
    return points(cells, letters, "nDCG@10")


@pytest.mark.parametrize("suite,dataset", [("beir", "nfcorpus"), ("dl", "dl19"), ("quantized", "scifact")])
def test_frontier_is_exactly_the_non_dominated_rankers(config, suite, dataset):
    from harness.plots import frontier

    pts, left, sanity = _points(config, suite, dataset)
    assert len(pts) >= 3
    front = frontier(pts)

    def dominated(p):
        return any(o is not p and o.latency_ms <= p.latency_ms and o.value >= p.value
                   and (o.latency_ms < p.latency_ms or o.value > p.value) for o in pts)

    assert {p.ranker for p in front} == {p.ranker for p in pts if not dominated(p)}
    assert [p.latency_ms for p in front] == sorted(p.latency_ms for p in front)
    assert [p.value for p in front] == sorted(p.value for p in front)
    # oracle and random are bounds, never plotted; precomputed runs have no latency here
    assert not any("oracle" in p.ranker or "random" in p.ranker for p in pts)
    if suite == "dl":
        assert "bm25-run" in left and "oracle-rerank-bm25run" in sanity


def test_report_writes_and_embeds_its_plots(config, reports, capsys):
    from harness.cli import main

    args = ["--config", str(ROOT / "bench.toml"), "--reports", str(reports)]
    assert main(["report", "dl", *args]) == 0
    text = (reports / "dl.md").read_text()
    for d in ("dl19", "dl20"):
        png, svg = reports / "plots" / f"dl-{d}.png", reports / "plots" / f"dl-{d}.svg"
        assert f"](plots/dl-{d}.png)" in text and f"(plots/dl-{d}.svg)" in text
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
        assert svg.read_text().lstrip().startswith("<?xml") and "minilm-int8-rerank-bm25run" in svg.read_text()
    first = (reports / "plots" / "dl-dl19.png").read_bytes(), (reports / "plots" / "dl-dl19.svg").read_bytes()
    assert main(["report", "dl", *args]) == 0
    assert ((reports / "plots" / "dl-dl19.png").read_bytes(), (reports / "plots" / "dl-dl19.svg").read_bytes()) == first
    assert main(["report", "dl", "--check", *args]) == 0
    (reports / "plots" / "dl-dl20.svg").unlink()
    capsys.readouterr()
    assert main(["report", "dl", "--check", *args]) == 1
    assert "embeds plots that are missing" in capsys.readouterr().err
