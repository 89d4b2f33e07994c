"""Bad and hostile input, tried as a new user would: each case damages a real project (a slice of
Vaswani, a shipped run, bench.toml, baselines.toml, the reports folder, the cache home) and runs
the real command line on it. Every case gets a clear error that names the file and line (or the
config key) and exits 2, or behaves correctly; none gets a traceback, a silent wrong number, or
loses what was already written.

Categories: data files (corpus, queries, qrels, dataset.toml, MANIFEST.tsv; plain and gzipped),
run files, bench.toml (syntax, references, typed parameter ranges), baselines.toml, the file
system (reports folder, cache home, results and plots), the cache (poisoned, corrupt, stale
temporaries), rankers that break the contract, and what `compare` prints. Kills and interrupts at
every write point are in tests/test_crash.py.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import ToyProject

# -- helpers that damage a project ------------------------------------------------------------


def replace_in(path: Path, old: str, new: str, count: int = 1) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, count), encoding="utf-8")


def config_edit(old: str, new: str):
    return lambda t: replace_in(t.config, old, new)


def config_add(text: str):
    return lambda t: t.config.write_text(t.config.read_text() + "\n" + text + "\n")


def ranker_param(ranker: str, line: str):
    """Add a line to a ranker's table of bench.toml."""
    return lambda t: replace_in(t.config, f"[rankers.{ranker}]\n", f"[rankers.{ranker}]\n{line}\n")


def set_line(rel: str, n: int, text: str):
    return lambda t: t.set_line(rel, n, text)


def write(rel: str, data: bytes | str):
    def go(t):
        p = t.file(rel)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data if isinstance(data, bytes) else data.encode())
    return go


def raw_line(rel: str, n: int, data: bytes):
    """Replace line n of a data file with raw bytes (not UTF-8, say)."""
    def go(t):
        lines = t.file(rel).read_bytes().splitlines(keepends=True)
        lines[n - 1] = data
        t.file(rel).write_bytes(b"".join(lines))
    return go


def gzipped(rel: str, damage=None):
    """Compress a data file (rel -> rel.gz, the plain one removed), then damage the archive."""
    def go(t):
        plain = t.file(rel)
        data = gzip.compress(plain.read_bytes(), mtime=0)
        plain.unlink()
        t.file(rel + ".gz").write_bytes(damage(data) if damage else data)
    return go


def run_line(n: int, text: str):
    return set_line("runs/first.trec", n, text)


def query_line(qid_index: int, obj: dict):
    return set_line("queries.jsonl", qid_index, json.dumps(obj))


def both(*steps):
    def go(t):
        for s in steps:
            s(t)
    return go


def manifest(t: ToyProject) -> None:
    from harness.data import write_manifest

    write_manifest(t.data)


def baselines(text: str):
    return lambda t: (t.reports / "baselines.toml").write_text(text)


GOOD_BASELINE = '[s.machine]\nid = "m"\n\n[s.cells."first/toy"]\n"nDCG@10" = 0.5\n'

# -- the cases ----------------------------------------------------------------------------------
# (id, what it does to the project, the command, exit code, what the output must say)

VALIDATE = ("validate",)
RUN = ("run", "s", "--no-progress", "--no-report")

CASES = [
    # data: corpus
    ("corpus-id-with-space", set_line("corpus.jsonl", 3, '{"_id": "d 3", "text": "x"}'), VALIDATE, 2,
     ["toy/corpus.jsonl:3", "'d 3' contains whitespace"]),
    ("corpus-id-with-tab", set_line("corpus.jsonl", 4, '{"_id": "d\\t4", "text": "x"}'), VALIDATE, 2,
     ["toy/corpus.jsonl:4", "contains whitespace"]),
    ("corpus-id-with-newline", set_line("corpus.jsonl", 2, '{"_id": "d\\n2", "text": "x"}'), VALIDATE, 2,
     ["toy/corpus.jsonl:2", "contains whitespace"]),
    ("corpus-id-space-on-run", set_line("corpus.jsonl", 3, '{"_id": "d 3", "text": "x"}'), RUN, 1,
     ["toy/corpus.jsonl:3", "contains whitespace"]),
    ("corpus-invalid-json", set_line("corpus.jsonl", 5, '{"_id": "5", "text": '), VALIDATE, 2,
     ["toy/corpus.jsonl:5", "invalid JSON"]),
    ("corpus-not-an-object", set_line("corpus.jsonl", 6, '["a", "b"]'), VALIDATE, 2,
     ["toy/corpus.jsonl:6", "must be a JSON object, found list"]),
    ("corpus-no-id", set_line("corpus.jsonl", 2, '{"text": "no id"}'), VALIDATE, 2,
     ["toy/corpus.jsonl:2", 'has no "_id"']),
    ("corpus-id-bool", set_line("corpus.jsonl", 2, '{"_id": true, "text": "x"}'), VALIDATE, 2,
     ["toy/corpus.jsonl:2", '"_id" must be a non-empty string, found True']),
    ("corpus-id-empty", set_line("corpus.jsonl", 2, '{"_id": "  ", "text": "x"}'), VALIDATE, 2,
     ["toy/corpus.jsonl:2", '"_id" must be a non-empty string']),
    ("corpus-text-number", set_line("corpus.jsonl", 7, '{"_id": "x7", "text": 7}'), VALIDATE, 2,
     ["toy/corpus.jsonl:7", 'needs a string "text"']),
    ("corpus-title-list", set_line("corpus.jsonl", 7, '{"_id": "x7", "title": [1], "text": "t"}'), VALIDATE, 2,
     ["toy/corpus.jsonl:7", '"title" must be a string']),
    ("corpus-duplicate-id", lambda t: t.set_line("corpus.jsonl", 9, t.lines("corpus.jsonl")[0]), VALIDATE, 2,
     ["toy/corpus.jsonl:9", "duplicate document id", "first on line 1"]),
    ("corpus-empty", write("corpus.jsonl", ""), VALIDATE, 2, ["toy/corpus.jsonl: no documents"]),
    ("corpus-not-utf8", raw_line("corpus.jsonl", 8, b'{"_id": "x8", "text": "caf\xe9"}\n'), VALIDATE, 2,
     ["toy/corpus.jsonl:8", "not UTF-8", "byte 0xe9"]),
    ("corpus-missing", lambda t: t.file("corpus.jsonl").unlink(), VALIDATE, 2, ["missing corpus.jsonl"]),
    ("corpus-plain-and-gz", lambda t: shutil.copy(t.file("corpus.jsonl"), t.file("corpus.jsonl.gz")), VALIDATE, 2,
     ["both corpus.jsonl and corpus.jsonl.gz exist"]),
    ("corpus-gz-truncated", gzipped("corpus.jsonl", lambda b: b[: len(b) // 2]), VALIDATE, 2,
     ["toy/corpus.jsonl.gz:", "cannot read", "ends early"]),
    ("corpus-gz-not-gzip", both(lambda t: t.file("corpus.jsonl").unlink(), write("corpus.jsonl.gz", "plain, not gzip\n")),
     VALIDATE, 2,
     ["toy/corpus.jsonl.gz:1", "not a gzip file"]),
    ("corpus-gz-corrupt-bytes", gzipped("corpus.jsonl", lambda b: b[:200] + bytes(64) + b[264:]), VALIDATE, 2,
     ["toy/corpus.jsonl.gz:", "cannot read"]),
    ("corpus-gz-bad-crc", gzipped("corpus.jsonl", lambda b: b[:-8] + bytes(4) + b[-4:]), VALIDATE, 2,
     ["toy/corpus.jsonl.gz:", "cannot read"]),
    # data: queries
    ("queries-id-with-space", query_line(2, {"_id": "2 b", "text": "q"}), VALIDATE, 2,
     ["toy/queries.jsonl:2", "query id '2 b' contains whitespace"]),
    ("queries-not-utf8", raw_line("queries.jsonl", 3, b'{"_id": "3", "text": "\xff\xfe"}\n'), VALIDATE, 2,
     ["toy/queries.jsonl:3", "not UTF-8"]),
    ("queries-empty-file", write("queries.jsonl", ""), VALIDATE, 2, ["toy/queries.jsonl: no queries (the file is empty)"]),
    ("queries-empty-text", lambda t: t.set_line("queries.jsonl", 2, json.dumps(
        {"_id": json.loads(t.lines("queries.jsonl")[1])["_id"], "text": "   "})), VALIDATE, 2,
     ["toy/queries.jsonl:2", "is empty"]),
    ("queries-judged-without-text", lambda t: t.set_line("queries.jsonl", 1, '{"_id": "999", "text": "other"}'),
     VALIDATE, 2, ["qrels/test.tsv: query '1' is judged but has no text"]),
    ("queries-duplicate", lambda t: t.set_line("queries.jsonl", 4, t.lines("queries.jsonl")[0]), VALIDATE, 2,
     ["toy/queries.jsonl:4", "duplicate query id '1' (first on line 1)"]),
    ("queries-text-missing", query_line(5, {"_id": "5"}), VALIDATE, 2, ["toy/queries.jsonl:5", 'needs a string "text"']),
    # data: qrels
    ("qrels-doc-id-with-space", set_line("qrels/test.tsv", 3, "1\t12 39\t1"), VALIDATE, 2,
     ["qrels/test.tsv:3", "doc id '12 39' contains whitespace"]),
    ("qrels-empty-doc-id", set_line("qrels/test.tsv", 3, "1\t\t1"), VALIDATE, 2, ["qrels/test.tsv:3", "doc id '' is empty"]),
    ("qrels-two-columns", set_line("qrels/test.tsv", 4, "1\t1239"), VALIDATE, 2,
     ["qrels/test.tsv:4", "found 2 columns"]),
    ("qrels-grade-not-integer", set_line("qrels/test.tsv", 5, "1\t1239\thigh"), VALIDATE, 2,
     ["qrels/test.tsv:5", "relevance must be an integer, found 'high'"]),
    ("qrels-judged-twice", lambda t: t.set_line("qrels/test.tsv", 3, t.lines("qrels/test.tsv")[1].rsplit("\t", 1)[0] + "\t0"),
     VALIDATE, 2, ["qrels/test.tsv:3", "judged twice"]),
    ("qrels-empty", write("qrels/test.tsv", "query-id\tcorpus-id\tscore\n"), VALIDATE, 2, ["qrels/test.tsv: no judgments"]),
    ("qrels-not-utf8", raw_line("qrels/test.tsv", 6, b"1\t\xc3(\t1\n"), VALIDATE, 2, ["qrels/test.tsv:6", "not UTF-8"]),
    ("qrels-missing", lambda t: t.file("qrels/test.tsv").unlink(), VALIDATE, 2, ["missing qrels/test.tsv"]),
    # data: dataset.toml and MANIFEST.tsv
    ("dataset-toml-syntax", write("dataset.toml", 'name = "x\n'), VALIDATE, 2, ["toy/dataset.toml", "line 1"]),
    ("dataset-toml-unknown-key", write("dataset.toml", 'nmae = "x"\n'), VALIDATE, 2,
     ["toy/dataset.toml", 'unknown key "nmae" (did you mean "name"?)']),
    ("dataset-toml-wrong-type", write("dataset.toml", 'rerank_only = "yes"\n'), VALIDATE, 2,
     ["toy/dataset.toml", "rerank_only must be true or false, found 'yes'"]),
    ("manifest-changed-byte", both(manifest, set_line("corpus.jsonl", 2, '{"_id": "zz", "text": "changed"}')),
     VALIDATE, 2, ["toy/corpus.jsonl", "does not match MANIFEST.tsv"]),
    ("manifest-bad-header", write("MANIFEST.tsv", "file\tsize\n"), VALIDATE, 2, ["MANIFEST.tsv:1", "header must start"]),
    ("manifest-bad-line", both(manifest, lambda t: t.file("MANIFEST.tsv").write_text(
        t.file("MANIFEST.tsv").read_text() + "corpus.jsonl\tbig\tabc\n")), VALIDATE, 2, ["MANIFEST.tsv:", "expected path, byte count and sha256"]),
    ("manifest-unlisted-file", both(manifest, write("runs/extra.trec", "1 Q0 1239 1 1.0 x\n")), VALIDATE, 2,
     ["runs/extra.trec: not listed in", "rankbench manifest"]),
    ("manifest-empty", write("MANIFEST.tsv", ""), VALIDATE, 2, ["MANIFEST.tsv: empty"]),
    # run files
    ("run-inf-score", run_line(5, "1 Q0 1239 5 inf overlap"), VALIDATE, 2, ["runs/first.trec:5", "score is 'inf'"]),
    ("run-inf-score-on-run", run_line(5, "1 Q0 1239 5 inf overlap"), RUN, 1, ["runs/first.trec:5", "score is 'inf'"]),
    ("run-nan-score", run_line(6, "1 Q0 1239 6 nan overlap"), VALIDATE, 2, ["runs/first.trec:6", "score is 'nan'"]),
    ("run-five-columns", run_line(7, "1 Q0 1239 7 1.0"), VALIDATE, 2, ["runs/first.trec:7", "6 columns", "found 5"]),
    ("run-rank-not-integer", run_line(8, "1 Q0 1239 first 1.0 x"), VALIDATE, 2,
     ["runs/first.trec:8", "rank must be an integer"]),
    ("run-doc-twice", lambda t: t.set_line("runs/first.trec", 3, t.lines("runs/first.trec")[1]), VALIDATE, 2,
     ["runs/first.trec:3", "appears twice for query"]),
    ("run-empty-file", write("runs/first.trec", ""), VALIDATE, 2, ["runs/first.trec: the run file has no lines"]),
    ("run-of-another-dataset", write("runs/first.trec", "q77 Q0 1239 1 1.0 x\n"), VALIDATE, 2,
     ["runs/first.trec: none of its 1 queries (e.g. 'q77') is a query of dataset toy"]),
    ("run-doc-not-in-corpus", run_line(2, "1 Q0 nosuchdoc 2 9.0 overlap"), VALIDATE, 2,
     ["runs/first.trec: query '1' ranks doc 'nosuchdoc', which is not in the corpus"]),
    ("run-not-utf8", raw_line("runs/first.trec", 4, b"1 Q0 \xe9t\xe9 4 1.0 x\n"), VALIDATE, 2,
     ["runs/first.trec:4", "not UTF-8"]),
    ("run-gz-truncated", gzipped("runs/first.trec", lambda b: b[: len(b) // 3]), VALIDATE, 2,
     ["runs/first.trec.gz:", "cannot read"]),
    ("run-path-empty-file", both(config_add('[rankers.mine]\nkind = "run"\npath = "mine.trec"'),
                                 config_edit('rankers = ["first",', 'rankers = ["mine", "first",'),
                                 lambda t: (t.root / "mine.trec").write_text("")), VALIDATE, 2,
     ["mine.trec: the run file has no lines"]),
    ("run-path-other-dataset", both(config_add('[rankers.mine]\nkind = "run"\npath = "mine.trec"'),
                                    config_edit('rankers = ["first",', 'rankers = ["mine", "first",'),
                                    lambda t: (t.root / "mine.trec").write_text("x1 Q0 1239 1 2.0 m\n")), RUN, 1,
     ["mine.trec: none of its 1 queries (e.g. 'x1') is a query of dataset toy"]),
    # bench.toml
    ("config-syntax", config_add("[rankers.broken\nkind = 'x'"), VALIDATE, 2, ["bench.toml", "line"]),
    ("config-not-utf8", lambda t: t.config.write_bytes(t.config.read_bytes() + b"# caf\xe9\n"), VALIDATE, 2,
     ["bench.toml:", "not UTF-8"]),
    ("config-missing", lambda t: t.config.unlink(), VALIDATE, 2, ["bench.toml: config file not found"]),
    ("config-unknown-section", config_add("[setting]\nk = 10"), VALIDATE, 2, ['unknown key "setting" (did you mean "settings"?)']),
    ("bm25-negative-k1", ranker_param("bm25s", "k1 = -0.9"), VALIDATE, 2,
     ["[rankers.bm25s]: k1 = -0.9 is out of range: it must be >= 0"]),
    ("bm25-b-above-one", ranker_param("bm25s", "b = 7.0"), VALIDATE, 2,
     ["[rankers.bm25s]: b = 7.0 is out of range: it must be <= 1"]),
    ("bm25-k1-string", ranker_param("bm25s", 'k1 = "high"'), VALIDATE, 2, ["[rankers.bm25s]: k1 must be a number, found 'high'"]),
    ("bm25-k1-nan", ranker_param("bm25s", "k1 = nan"), VALIDATE, 2, ["[rankers.bm25s]: k1 must be a finite number"]),
    ("settings-negative-k", config_edit("[settings]\n", "[settings]\nk = -1\n"), VALIDATE, 2,
     ["[settings]: k = -1 is out of range: it must be >= 1"]),
    ("settings-alpha-above-one", config_edit("[settings]\n", "[settings]\nalpha = 1.5\n"), VALIDATE, 2,
     ["[settings]: alpha = 1.5 is out of range: it must be < 1"]),
    ("settings-negative-latency-queries", config_edit("latency_queries = 3", "latency_queries = -3"), VALIDATE, 2,
     ["[settings]: latency_queries = -3 is out of range: it must be >= 0"]),
    ("settings-few-permutations", config_edit("[settings]\n", "[settings]\npermutations = 10\n"), VALIDATE, 2,
     ["[settings]: permutations = 10 is out of range: it must be >= 100"]),
    ("suite-settings-negative-k", config_edit('baseline = "first"', 'baseline = "first"\nsettings = { k = 0 }'), VALIDATE, 2,
     ["[suites.s] settings: k = 0 is out of range"]),
    ("depth-zero", config_edit("depth = 20\n", "depth = 0\n"), VALIDATE, 2,
     ["[rankers.oracle-first]: depth must be a positive integer, found 0"]),
    ("bi-encoder-batch-zero", config_add('[rankers.enc]\nkind = "bi-encoder"\nbatch_size = 0'), VALIDATE, 2,
     ["[rankers.enc]: batch_size = 0 is out of range: it must be >= 1"]),
    ("fusion-negative-weight", config_add('[rankers.fz]\nkind = "fusion"\nmembers = { first = 1.0, bm25s = -1.0 }'),
     VALIDATE, 2, ["[rankers.fz]: members.bm25s = -1.0 is out of range: it must be >= 0"]),
    ("check-negative-latency", config_add("[check]\nlatency = -1"), VALIDATE, 2,
     ["[check]: latency = -1.0 is out of range: it must be >= 0"]),
    ("check-unknown-key", config_add("[check]\nlatency_slack = 2.0"), VALIDATE, 2,
     ['unknown key "latency_slack" (did you mean "latency_slack_ms"?)']),
    ("unknown-kind", config_add('[rankers.x]\nkind = "bm52"'), VALIDATE, 2, ['unknown ranker kind "bm52" (did you mean "bm25"?)']),
    ("unknown-parameter", ranker_param("bm25s", "kl = 1.0"), VALIDATE, 2, ['unknown parameter "kl" (did you mean "k1"?)']),
    ("suite-unknown-ranker", config_edit('"random-first"]', '"random-frist"]'), VALIDATE, 2,
     ['[suites.s]: unknown ranker "random-frist" (did you mean "random-first"?)']),
    ("first-stage-cycle", config_edit('kind = "random"\nfirst_stage = "first"', 'kind = "random"\nfirst_stage = "random-first"'),
     VALIDATE, 2, ["rankers form a cycle"]),
    ("dataset-without-scheme", config_edit('toy = "local:data/toy"', 'toy = "data/toy"'), VALIDATE, 2,
     ["[datasets.toy]: source 'data/toy' must be"]),
    ("dataset-folder-missing", config_edit('toy = "local:data/toy"', 'toy = "local:data/tyo"'), VALIDATE, 2,
     ["[datasets.toy]: folder", "data/tyo not found"]),
    ("name-with-double-underscore", config_edit("[rankers.bm25s]", "[rankers.bm25__s]"), VALIDATE, 2,
     ["[rankers.bm25__s]: name 'bm25__s'", "may not contain '__'"]),
    ("recipe-warmup-above-one", config_add('[recipes.r]\ntrain = ["toy"]\nminers = ["bm25s"]\nwarmup = 1.5'), VALIDATE, 2,
     ["[recipes.r]: warmup = 1.5 is out of range: it must be < 1"]),
    ("significance-unknown", config_edit("[settings]\n", '[settings]\nsignificance = "wilcoxon"\n'), VALIDATE, 2,
     ["[settings]: significance = 'wilcoxon'"]),
    # baselines.toml
    ("baseline-value-string", baselines(GOOD_BASELINE.replace("0.5", '"0.5"')), ("check", "s"), 2,
     ['baselines.toml: [s.cells."first/toy"] nDCG@10 = \'0.5\' must be a number']),
    ("baseline-syntax", baselines("[s.machine\n"), ("check", "s"), 2, ["baselines.toml", "line 1"]),
    ("baseline-no-machine-id", baselines('[s.cells."first/toy"]\n"nDCG@10" = 0.5\n'), ("check", "s"), 2,
     ["baselines.toml: [s].machine needs id"]),
    ("baseline-cell-not-a-table", baselines('[s.machine]\nid = "m"\n[s.cells]\n"first/toy" = 0.5\n'), ("check", "s"), 2,
     ['baselines.toml: [s.cells."first/toy"] must be a table']),
    ("baseline-on-validate", baselines(GOOD_BASELINE.replace("0.5", "true")), VALIDATE, 2,
     ['[s.cells."first/toy"] nDCG@10 = True must be a number']),
    ("baseline-missing-suite", baselines(GOOD_BASELINE.replace("[s.", "[other.")), ("check", "s"), 2,
     ["no baseline for suite 's'", "rankbench accept s"]),
    # file system
    ("reports-results-is-a-file", lambda t: (t.reports / "results").write_text("x"), RUN, 2,
     ["reports/results", "cannot create the results folder", "a file stands where a folder is needed"]),
    ("reports-is-a-file", lambda t: (shutil.rmtree(t.reports), t.reports.write_text("x")), ("run", "s", "--no-progress"), 2,
     ["reports", "a file stands where a folder is needed"]),
    ("reports-is-a-file-validate", lambda t: (shutil.rmtree(t.reports), t.reports.write_text("x")), VALIDATE, 2,
     ["the reports folder must be a folder, but a file is there"]),
    ("compare-out-is-a-folder", lambda t: (t.root / "out.md").mkdir(),
     ("compare", "first", "bm25s", "--dataset", "toy", "--suite", "s", "--out", "OUT"), 2, ["out.md", "Is a directory"]),
]


@pytest.mark.parametrize("case, damage, argv, code, needles", CASES, ids=[c[0] for c in CASES])
def test_bad_input(case, damage, argv, code, needles, toy, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("RANKBENCH_HOME", str(tmp_path / "home"))
    damage(toy)
    argv = [str(toy.root / "out.md") if a == "OUT" else a for a in argv]
    got, out = toy.cli(*argv, capsys=capsys)
    assert got == code, out
    for needle in needles:
        assert needle in out, f"{needle!r} not in:\n{out}"
    assert "Traceback" not in out


def test_there_are_at_least_60_cases():
    assert len(CASES) + len(BEHAVES) >= 60


# -- cases that must behave correctly (not an error) ---------------------------------------------


def _run_ok(toy: ToyProject, capsys, *extra) -> str:
    code, out = toy.cli("run", "s", "--no-progress", *extra, capsys=capsys)
    assert code == 0, out
    assert "Traceback" not in out
    return out


def _result(toy: ToyProject, ranker: str) -> dict:
    return json.loads((toy.reports / "results" / "s" / f"{ranker}__toy.json").read_text())


def test_qrels_judging_documents_outside_the_corpus_warn_with_counts(toy, capsys, tmp_path, monkeypatch):
    """The oracle ceiling drops silently when the corpus lacks judged documents; now the result and
    the report say so with counts, and no ranker (the retrieving oracle included) returns them."""
    monkeypatch.setenv("RANKBENCH_HOME", str(tmp_path / "home"))
    qrels = [line.split("\t") for line in toy.lines("qrels/test.tsv")[1:]]
    relevant = [d for q, d, g in qrels if int(g) > 0]
    gone = set(relevant[:10])
    kept = [line for line in toy.lines("corpus.jsonl") if json.loads(line)["_id"] not in gone]
    toy.file("corpus.jsonl").write_text("".join(kept))
    lines = [line for line in toy.lines("runs/first.trec") if line.split()[2] not in gone]
    toy.file("runs/first.trec").write_text("".join(lines))
    replace_in(toy.config, "[suites.s]", '[rankers.oracle]\nkind = "oracle"\n\n[suites.s]')
    replace_in(toy.config, '"random-first"]', '"random-first", "oracle"]')
    code, out = toy.cli("validate", capsys=capsys)
    assert code == 0 and f"warning: the qrels judge {len(gone)} documents that are not in the corpus" in out
    _run_ok(toy, capsys)
    for r in ("first", "bm25s", "oracle", "oracle-first"):
        warnings = _result(toy, r)["warnings"]
        assert f"the qrels judge {len(gone)} documents that are not in the corpus ({len(gone)} of them relevant" in warnings[0]
    report = (toy.reports / "s.md").read_text()
    assert report.count(f"> **Warning:** the qrels judge {len(gone)} documents") == 1
    # the retrieving oracle returns only documents the corpus holds, so it scores below 1
    oracle = _result(toy, "oracle")["measures"]["aggregate"]["nDCG@10"]
    assert oracle < 1.0


def test_bom_and_crlf_line_endings_read_as_plain_text(toy, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("RANKBENCH_HOME", str(tmp_path / "home"))
    _run_ok(toy, capsys, "--no-report")
    before = _result(toy, "bm25s")["measures"]["aggregate"]
    for rel in ("queries.jsonl", "qrels/test.tsv", "corpus.jsonl"):
        p = toy.file(rel)
        p.write_bytes(b"\xef\xbb\xbf" + p.read_bytes().replace(b"\n", b"\r\n"))
    shutil.rmtree(toy.reports / "results")
    _run_ok(toy, capsys, "--no-report")
    assert _result(toy, "bm25s")["measures"]["aggregate"] == before


def test_a_poisoned_cache_entry_is_quarantined_and_rebuilt(toy, capsys, tmp_path, monkeypatch):
    """A cached run that cannot be read back is never reused: it is moved aside, rebuilt, and the
    numbers are those of a clean run."""
    home = tmp_path / "home"
    monkeypatch.setenv("RANKBENCH_HOME", str(home))
    _run_ok(toy, capsys, "--no-report")
    before = {r: _result(toy, r)["measures"]["aggregate"] for r in ("first", "bm25s", "random-first")}
    runs = sorted(home.glob("runs/*/*/run.trec.gz"))
    assert len(runs) == 4
    data = runs[0].read_bytes()                                              # same size, bytes flipped
    runs[0].write_bytes(data[:20] + bytes(b ^ 0xFF for b in data[20:60]) + data[60:])
    runs[1].write_bytes(runs[1].read_bytes()[:40])                           # truncated
    (runs[2].parent / "entry.json").write_text("{not json")                  # its marker damaged
    shutil.rmtree(toy.reports / "results")
    out = _run_ok(toy, capsys, "--no-report")
    assert out.count("is damaged") == 3 and out.count("could not be read back") == 1, out
    assert "run.trec.gz is 40 bytes" in out and "entry.json unreadable" in out
    assert len(list((home / "quarantine").iterdir())) == 3
    assert all((q / "QUARANTINED.txt").exists() for q in (home / "quarantine").iterdir())
    after = {r: _result(toy, r)["measures"]["aggregate"] for r in before}
    assert after == before
    out = _run_ok(toy, capsys, "--no-report")       # and from now on the rebuilt entries are used
    assert "could not be read back" not in out
    assert out.count(": up-to-date (") == 4


def test_a_truncated_or_missing_index_file_is_quarantined_and_rebuilt(toy, capsys, tmp_path, monkeypatch):
    """Every cache entry records its files' sizes; one that no longer matches is never reused."""
    home = tmp_path / "home"
    monkeypatch.setenv("RANKBENCH_HOME", str(home))
    _run_ok(toy, capsys, "--no-report")
    before = _result(toy, "bm25s")["measures"]
    index = next(p for p in home.glob("bm25-bm25s/*/*") if p.is_dir())
    files = sorted(f for f in index.rglob("*") if f.is_file() and f.name != "entry.json" and f.stat().st_size > 8)
    files[0].write_bytes(files[0].read_bytes()[:8])
    files[1].unlink()
    for run in home.glob("runs/*/*"):       # so the index is needed again
        shutil.rmtree(run)
    _run_ok(toy, capsys, "--no-report", "--force")
    (reason,) = [q / "QUARANTINED.txt" for q in (home / "quarantine").iterdir()]
    assert f"{files[0]} is 8 bytes" in reason.read_text() or "is missing" in reason.read_text()
    assert _result(toy, "bm25s")["measures"] == before


def test_a_result_json_without_its_measures_is_named(toy, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("RANKBENCH_HOME", str(tmp_path / "home"))
    _run_ok(toy, capsys)
    path = toy.reports / "results" / "s" / "bm25s__toy.json"
    result = json.loads(path.read_text())
    del result["measures"]["per_query"]
    path.write_text(json.dumps(result))
    code, out = toy.cli("report", "s", "--check", capsys=capsys)
    assert code == 2 and f"{path}: measures.per_query is missing" in out and "Traceback" not in out
    result["measures"]["per_query"] = {}
    result["measures"]["aggregate"]["nDCG@10"] = "0.9"
    path.write_text(json.dumps(result))
    code, out = toy.cli("report", "s", capsys=capsys)
    assert code == 2 and "measures.aggregate.nDCG@10 = '0.9' is not a number" in out
    raw_line_path = path.read_bytes()
    path.write_bytes(raw_line_path.replace(b'"bm25s"', b'"bm25\xe9"', 1))
    code, out = toy.cli("run", "s", "--no-progress", capsys=capsys)      # rerun: the damaged cell is redone
    assert code == 0 and "bm25s on toy: cached-run" in out, out


def test_temporaries_of_a_killed_writer_are_swept_on_the_next_run(toy, capsys, tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("RANKBENCH_HOME", str(home))
    dead = _dead_pid()
    from harness.files import _host

    shard = home / "runs" / "ab"
    shard.mkdir(parents=True)
    left = shard / f".abcd.rbtmp-{_host()}-{dead}-x1.tmp"
    left.mkdir()
    (left / "run.trec.gz").write_bytes(b"half")
    result_tmp = toy.reports / "results" / "s" / f".first__toy.json.rbtmp-{_host()}-{dead}-x2.tmp"
    result_tmp.parent.mkdir(parents=True)
    result_tmp.write_text("{")
    alive = shard / f".efgh.rbtmp-{_host()}-{os.getpid()}-x3.tmp"     # a live writer's: kept
    alive.mkdir()
    out = _run_ok(toy, capsys, "--no-report")
    assert not left.exists() and not result_tmp.exists() and alive.exists()
    assert f"removed {left}" in out


def _dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def test_written_files_take_the_umask_modes(toy, capsys, tmp_path, monkeypatch):
    """A shared cache and reports folder work for a teammate: 0644 files, 0755 folders under 022."""
    home = tmp_path / "home"
    monkeypatch.setenv("RANKBENCH_HOME", str(home))
    old = os.umask(0o022)
    try:
        _run_ok(toy, capsys)
    finally:
        os.umask(old)
    files = [p for p in list(home.rglob("*")) + list(toy.reports.rglob("*")) if p.is_file()]
    dirs = [p for p in list(home.rglob("*")) + list(toy.reports.rglob("*")) if p.is_dir()]
    assert len(files) > 10 and dirs
    assert {oct(p.stat().st_mode & 0o777) for p in files} == {"0o644"}
    assert {oct(p.stat().st_mode & 0o777) for p in dirs} == {"0o755"}


def test_manifest_on_a_shipped_folder_keeps_its_raw_columns(copy_dataset, capsys):
    from harness.cli import main

    folder = copy_dataset("vaswani")
    before = (folder / "MANIFEST.tsv").read_text()
    assert main(["manifest", str(folder)]) == 0
    assert (folder / "MANIFEST.tsv").read_text() == before
    # a changed file gets its raw size and digest computed anew
    raw = b"query-id\tcorpus-id\tscore\n1\t1239\t1\n"
    (folder / "qrels" / "test.tsv.gz").write_bytes(gzip.compress(raw, mtime=0))
    assert main(["manifest", str(folder)]) == 0
    row = next(r.split("\t") for r in (folder / "MANIFEST.tsv").read_text().splitlines() if r.startswith("qrels/"))
    assert row[3:] == [str(len(raw)), hashlib.sha256(raw).hexdigest()]


def test_a_read_only_reports_folder_fails_before_any_work(toy, capsys, tmp_path, monkeypatch):
    """As root a mode bit does not stop a write, so the folder is made immutable (chattr +i)."""
    monkeypatch.setenv("RANKBENCH_HOME", str(tmp_path / "home"))
    if os.geteuid() == 0:
        if not shutil.which("chattr") or subprocess.run(["chattr", "+i", str(toy.reports)]).returncode:
            pytest.skip("root, and this file system has no immutable flag")
        undo = ["chattr", "-i", str(toy.reports)]
    else:
        toy.reports.chmod(0o555)
        undo = ["chmod", "755", str(toy.reports)]
    try:
        code, out = toy.cli("run", "s", "--no-progress", capsys=capsys)
    finally:
        subprocess.run(undo, check=True)
    assert code == 2 and "Traceback" not in out
    assert f"{toy.reports / 'results' / 's'}: cannot create the results folder" in out
    assert "ran" not in out                       # nothing was computed only to be lost


def test_rankbench_home_pointing_at_a_file(toy, capsys, tmp_path, monkeypatch):
    home = tmp_path / "home-file"
    home.write_text("not a folder")
    monkeypatch.setenv("RANKBENCH_HOME", str(home))
    code, out = toy.cli("run", "s", "--no-progress", capsys=capsys)
    assert code == 2 and "Traceback" not in out
    assert f"RANKBENCH_HOME={home}" in out and "must be a folder, but a file is there" in out
    assert out.count("error") == 1                # once, before any cell; not once per cell
    code, out = toy.cli("validate", capsys=capsys)
    assert code == 2 and "the cache home must be a folder" in out


def test_report_check_fails_on_an_empty_or_damaged_plot_and_result(toy, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("RANKBENCH_HOME", str(tmp_path / "home"))
    _run_ok(toy, capsys)
    assert toy.cli("report", "s", "--check", capsys=capsys)[0] == 0
    svg, png = toy.reports / "plots" / "s-toy.svg", toy.reports / "plots" / "s-toy.png"
    good_svg, good_png = svg.read_bytes(), png.read_bytes()
    for path, data, needle in ((svg, b"", "s-toy.svg (empty)"), (svg, good_svg[: len(good_svg) // 2], "not valid SVG XML"),
                               (png, good_png[: len(good_png) // 2], "not a whole PNG"),
                               (png, good_png[:100] + bytes(200) + good_png[300:], "not a readable PNG"),
                               (svg, b"<html></html>", "not an SVG document"), (png, None, "s-toy.png (missing)")):
        if data is None:
            path.unlink()
        else:
            path.write_bytes(data)
        code, out = toy.cli("report", "s", "--check", capsys=capsys)
        assert code == 1 and needle in out and "up to date" not in out, out
        svg.write_bytes(good_svg)
        png.write_bytes(good_png)
    result = toy.reports / "results" / "s" / "bm25s__toy.json"
    result.write_text(result.read_text()[:-200])
    code, out = toy.cli("report", "s", "--check", capsys=capsys)
    assert code == 2 and f"{result}:" in out and "not valid JSON" in out


PLUGIN = '''
from rankers.base import Ranker

class Spaces(Ranker):
    kind = "spaces"
    def rank(self, queries, candidates, k):
        return {q: {"doc with spaces": 1.0} for q in queries}

class Infinite(Ranker):
    kind = "infinite"
    def rank(self, queries, candidates, k):
        return {q: {next(iter(self.dataset.corpus())): float("inf")} for q in queries}

class Invented(Ranker):
    kind = "invented"
    def rank(self, queries, candidates, k):
        return {q: {"not-in-the-corpus": 1.0} for q in queries}
'''


@pytest.mark.parametrize("cls, needle", [("Spaces", "returned doc 'doc with spaces', which is not in the corpus"),
                                         ("Infinite", "has score inf (need a finite float)"),
                                         ("Invented", "returned doc 'not-in-the-corpus', which is not in the corpus")])
def test_a_ranker_that_breaks_the_contract_is_named_and_nothing_is_cached(cls, needle, toy, capsys, tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("RANKBENCH_HOME", str(home))
    (toy.root / "hostile_rankers.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(toy.root))
    replace_in(toy.config, "[suites.s]", f'[rankers.mine]\nkind = "hostile_rankers:{cls}"\n\n[suites.s]')
    replace_in(toy.config, '"random-first"]', '"random-first", "mine"]')
    code, out = toy.cli("run", "s", "--no-progress", "--no-report", capsys=capsys)
    assert code == 1 and "Traceback" not in out
    assert f"error: mine on toy: ranker mine (hostile_rankers:{cls})" in out and needle in out
    assert not (toy.reports / "results" / "s" / "mine__toy.json").exists()
    assert len(list(home.glob("runs/*/*/run.trec.gz"))) == 4           # the other cells', not its


def test_check_tolerates_submillisecond_noise_but_not_a_real_slowdown(toy, capsys, tmp_path, monkeypatch):
    """Latency baselines on this machine: a sub-millisecond median doubling is noise, within the
    1 ms slack; with no slack the same doubling fails."""
    import tomllib

    import tomli_w

    monkeypatch.setenv("RANKBENCH_HOME", str(tmp_path / "home"))
    # this test is about the slack: latency timed on a busy machine is compared all the same
    toy.config.write_text(toy.config.read_text() + "\n[check]\nlatency_busy_cores = 1000.0\n")
    _run_ok(toy, capsys, "--no-report")
    assert toy.cli("accept", "s", capsys=capsys)[0] == 0
    path = toy.reports / "baselines.toml"
    data = tomllib.loads(path.read_text())
    cells = data["s"]["cells"]
    lat = {c: v["latency_p50_ms"] for c, v in cells.items() if "latency_p50_ms" in v}
    fast = min(lat, key=lat.get)
    assert lat[fast] < 1.0, lat                   # the random reranker of 20 candidates
    cells[fast]["latency_p50_ms"] = lat[fast] / 2
    path.write_text(tomli_w.dumps(data))
    code, out = toy.cli("check", "s", capsys=capsys)
    assert code == 0 and f"OKISH {fast}" in out, out
    # without the slack, the same noise fails: the slack is what keeps it out of CI
    toy.config.write_text(toy.config.read_text() + "latency_slack_ms = 0.0\n")
    code, out = toy.cli("check", "s", capsys=capsys)
    assert code == 1 and f"FAIL  {fast}" in out, out


def test_compare_keeps_a_hostile_query_on_one_line(toy, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("RANKBENCH_HOME", str(tmp_path / "home"))
    lines = toy.lines("queries.jsonl")
    objs = [json.loads(x) for x in lines]
    objs[0]["text"] = "first line\n## injected heading\n" + "x" * 100_000
    objs[1]["text"] = "pipes | and\ttabs"
    toy.file("queries.jsonl").write_text("".join(json.dumps(o) + "\n" for o in objs))
    code, out = toy.cli("compare", "bm25s", "random-first", "--dataset", "toy", "--suite", "s", "--top", "6",
                        capsys=capsys)
    assert code == 0, out
    headings = [x for x in out.splitlines() if x.startswith("## ")]
    assert len(headings) >= 2 and not any(x.startswith("## injected") for x in out.splitlines())
    first = next(x for x in headings if x.startswith(f"## {objs[0]['_id']}:"))
    assert first.endswith(" …") and len(first) < 260
    assert any("pipes \\| and tabs" in x for x in headings)


BEHAVES = [test_qrels_judging_documents_outside_the_corpus_warn_with_counts, test_bom_and_crlf_line_endings_read_as_plain_text,
           test_a_poisoned_cache_entry_is_quarantined_and_rebuilt, test_temporaries_of_a_killed_writer_are_swept_on_the_next_run,
           test_a_truncated_or_missing_index_file_is_quarantined_and_rebuilt, test_a_result_json_without_its_measures_is_named,
           test_written_files_take_the_umask_modes, test_manifest_on_a_shipped_folder_keeps_its_raw_columns,
           test_a_read_only_reports_folder_fails_before_any_work, test_rankbench_home_pointing_at_a_file,
           test_report_check_fails_on_an_empty_or_damaged_plot_and_result,
           *[test_a_ranker_that_breaks_the_contract_is_named_and_nothing_is_cached] * 3,
           test_check_tolerates_submillisecond_noise_but_not_a_real_slowdown, test_compare_keeps_a_hostile_query_on_one_line]
