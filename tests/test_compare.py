"""`rankbench compare A B --dataset D` on the shipped DL 2019 runs: the queries it picks, the
scores it prints and the judged documents it lists are checked against an independent reading of
the same runs and qrels."""
from __future__ import annotations

import gzip
import re
from collections import defaultdict

import pytest

from conftest import DATASETS, ROOT


def _read_run(name: str) -> dict[str, dict[str, float]]:
    path = next((DATASETS / "trec-dl-2019" / "runs").glob(f"{name}.trec*"))
    opener = gzip.open if path.suffix == ".gz" else open
    run: dict[str, dict[str, float]] = defaultdict(dict)
    with opener(path, "rt") as f:
        for line in f:
            q, _, d, _, s, _ = line.split()
            run[q][d] = float(s)
    return run


def _ndcg10(run, qrels):
    import ir_measures

    ev = ir_measures.evaluator([ir_measures.parse_measure("nDCG@10")], qrels)
    out = {m.query_id: m.value for m in ev.iter_calc(run)}
    return {q: out.get(q, 0.0) for q in qrels}


@pytest.fixture(scope="module")
def output(config):
    from harness.compare import CompareArgs, compare

    return compare(config, ROOT / "reports", CompareArgs("tas-b-run", "bm25-run", "dl19", top=4, judged=2))


def test_compare_picks_the_queries_that_differ_most(output, config):
    from harness.runner import Runner

    ds = Runner(config, ROOT / "reports", progress=False).dataset("dl19")
    qrels = ds.qrels()
    a = _ndcg10({q: v for q, v in _read_run("tas-b").items() if q in qrels}, qrels)
    b = _ndcg10({q: v for q, v in _read_run("bm25").items() if q in qrels}, qrels)
    expected = sorted(qrels, key=lambda q: (-abs(a[q] - b[q]), q))[:4]
    shown = re.findall(r"^## (\S+): (.*)$", output, flags=re.M)
    assert [q for q, _ in shown] == expected
    queries = ds.queries()
    for q, text in shown:
        assert text == queries[q]
        line = next(x for x in output.splitlines() if x.startswith("nDCG@10: ") and f"Δ {a[q] - b[q]:+.4f}" in x)
        assert f"tas-b-run {a[q]:.4f}" in line and f"bm25-run {b[q]:.4f}" in line
    mean_a, mean_b = sum(a.values()) / len(a), sum(b.values()) / len(b)
    assert f"tas-b-run {mean_a:.4f}, bm25-run {mean_b:.4f}" in output
    wins = sum(a[q] > b[q] for q in qrels)
    assert f"tas-b-run wins {wins}," in output


def test_compare_lists_each_rankers_highest_judged_documents(output, config):
    from harness.runner import Runner

    qrels = Runner(config, ROOT / "reports", progress=False).dataset("dl19").qrels()
    rows = re.findall(r"^\| (tas-b-run|bm25-run) \| (\d+) \| (\S+) \| (\d+) \|", output, flags=re.M)
    assert len(rows) == 4 * 2 * 2
    sections = output.split("\n## ")[1:]
    for section in sections:
        q = section.split(":", 1)[0]
        for name, file in (("tas-b-run", "tas-b"), ("bm25-run", "bm25")):
            run = _read_run(file)[q]
            ranked = [d for d, _ in sorted(sorted(run.items(), reverse=True), key=lambda kv: -kv[1])]
            judged = [d for d in ranked if d in qrels[q]][:2]
            mine = [(int(r), d, int(g)) for n, r, d, g in re.findall(
                r"^\| (tas-b-run|bm25-run) \| (\d+) \| (\S+) \| (\d+) \|", section, flags=re.M) if n == name]
            assert mine == [(ranked.index(d) + 1, d, qrels[q][d]) for d in judged]


def test_compare_refuses_what_it_cannot_do(config):
    from harness.compare import CompareArgs, compare
    from harness.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown ranker 'tas-b'|tas-b"):
        compare(config, ROOT / "reports", CompareArgs("tas-b", "bm25-run", "dl19"))
    with pytest.raises(ConfigError, match="bm25 cannot rank dl19: dl19 is a reranking set"):
        compare(config, ROOT / "reports", CompareArgs("bm25", "bm25-run", "dl19"))
    with pytest.raises(ConfigError, match="suite beir does not evaluate dl19"):
        compare(config, ROOT / "reports", CompareArgs("bm25", "bm25s", "dl19", suite="beir"))
    with pytest.raises(ConfigError, match="ce-distilled-rerank-bm25run depends on recipe ce-distilled, which learnt "
                                          "from dl19: comparing it on dl19 would measure what it memorised"):
        compare(config, ROOT / "reports", CompareArgs("ce-distilled-rerank-bm25run", "bm25-run", "dl19"))
    with pytest.raises(ConfigError, match="two different rankers"):
        compare(config, ROOT / "reports", CompareArgs("bm25-run", "bm25-run", "dl19"))


def test_compare_command_writes_markdown(tmp_path, capsys):
    from harness.cli import main

    out = tmp_path / "cmp.md"
    assert main(["compare", "splade-pp-ed-run", "bm25-rm3-run", "--dataset", "dl20", "--top", "2",
                 "--measure", "AP(rel=2)@1000", "--suite", "dl", "--out", str(out), "--config", str(ROOT / "bench.toml")]) == 0
    text = out.read_text()
    assert text.startswith("# splade-pp-ed-run against bm25-rm3-run on dl20")
    assert text.count("\n## ") == 2 and "AP(rel=2)@1000: " in text
    assert "paired randomization test" in text          # the dl suite's test, its settings used
