"""Each run measured in a fresh process of its own (harness.isolation): a cell's peak memory is its
own, not what an earlier cell left loaded, and the runs and measures are those of one process."""
from __future__ import annotations

import gzip
import json

HOG = '''
from rankers.base import Ranker


class Hog(Ranker):
    """Ranks by document order, holding 300 MiB from prepare on (as a JVM or a model would)."""

    kind = "hog"
    reranks = True
    held = []

    def prepare(self, dataset, reranking=False):
        super().prepare(dataset, reranking)
        Hog.held.append(bytearray(300 * 2**20))      # touched: resident

    def rank(self, queries, candidates, k):
        docs = list(self.dataset.corpus())
        return {q: {d: 1.0 / (i + 1) for i, d in enumerate(docs[:k])} for q in queries}
'''


def _results(toy, suite="s"):
    out = {}
    for path in sorted((toy.reports / "results" / suite).glob("*.json")):
        r = json.loads(path.read_text())
        if r["status"] == "ok":
            out[r["ranker"]] = r
    return out


def _runs(home):
    return {p.parent.name: gzip.decompress(p.read_bytes()) for p in home.glob("runs/*/*/run.trec.gz")}


def _with_hog(toy, monkeypatch):
    (toy.root / "hog_rankers.py").write_text(HOG)
    monkeypatch.syspath_prepend(str(toy.root))
    text = toy.config.read_text().replace("[suites.s]", '[rankers.hog]\nkind = "hog_rankers:Hog"\n\n[suites.s]')
    # the hog first: every cell after it would inherit its 300 MiB in one process
    toy.config.write_text(text.replace('rankers = ["first"', 'rankers = ["hog", "first"'))


def test_a_cells_memory_is_its_own_not_an_earlier_cells(toy, capsys, tmp_path, monkeypatch):
    _with_hog(toy, monkeypatch)
    monkeypatch.setenv("RANKBENCH_HOME", str(tmp_path / "in-process"))
    assert toy.cli("run", "s", "--no-progress", "--no-report", "--in-process", capsys=capsys)[0] == 0
    shared = _results(toy)
    shared_runs = _runs(tmp_path / "in-process")
    monkeypatch.setenv("RANKBENCH_HOME", str(tmp_path / "own"))
    code, out = toy.cli("run", "s", "--no-progress", "--no-report", "--force", capsys=capsys)
    assert code == 0, out
    own = _results(toy)
    assert set(own) == set(shared) == {"hog", "first", "bm25s", "oracle-first", "random-first"}
    for name, r in own.items():
        e = r["efficiency"]
        assert e["memory_method"] == "VmHWM of the cell's own process" and e["process"]["own"], name
        assert e["process"]["start_s"] > 0 and e["process"]["baseline_rss_mib"] > 0
        assert r["measures"] == shared[name]["measures"], name       # the same run, the same measures
    assert _runs(tmp_path / "own") == shared_runs                     # byte for byte
    # the hog's 300 MiB are its own row's, in both modes...
    assert own["hog"]["efficiency"]["peak_rss_mib"] > 300
    # ...and, in one process, every later row's too; in their own processes, no other row has them
    for name in ("first", "bm25s", "oracle-first", "random-first"):
        assert shared[name]["efficiency"]["peak_rss_mib"] > 300, name
        assert own[name]["efficiency"]["peak_rss_mib"] < 250, (name, own[name]["efficiency"]["peak_rss_mib"])
    assert shared["first"]["efficiency"]["memory_method"] == "VmHWM"
    # a published run's row is the memory of reading its file: well under the hog's
    assert own["first"]["efficiency"]["rss_increase_mib"] < 100


def test_a_ranker_built_in_python_stays_in_this_process(toy, tmp_path, monkeypatch):
    """The API's rankers handed over as classes cannot be rebuilt from the config file in a child:
    the run is made here, and its result says why."""
    from harness.config import load_config
    from harness.isolation import available, measure_in_child
    from harness.runner import Runner

    monkeypatch.setenv("RANKBENCH_HOME", str(tmp_path / "home"))
    config = load_config(toy.config)
    runner = Runner(config, toy.reports, progress=False, isolate=measure_in_child, log=lambda m: None)
    assert available(runner) is None
    spec = config.rankers["bm25s"]
    monkeypatch.setitem(config.rankers, "bm25s", type(spec)(**{**spec.__dict__, "cls": spec.ranker_class()}))
    assert available(runner) == "a ranker class was handed over in Python"
    runner.run_cell(config.suite("s"), "bm25s", "toy")
    e = _results(toy)["bm25s"]["efficiency"]
    assert e["process"]["own"] is False and e["process"]["why_not"] == "a ranker class was handed over in Python"
    assert e["memory_method"] == "VmHWM"


PROBE = '''
import sys

from rankers.base import Ranker


class Probe(Ranker):
    """Ranks by document order, and says which of the harness's preloaded modules were already
    imported when its first ``rank`` call began (a ranker that imports one lazily would book it)."""

    kind = "probe"
    reranks = True
    seen = None

    def rank(self, queries, candidates, k):
        if Probe.seen is None:
            Probe.seen = sorted(m for m in ("numpy",) if m in sys.modules)
        docs = list(self.dataset.corpus())
        return {q: {d: 1.0 / (i + 1) for i, d in enumerate(docs[:k])} for q in queries}

    def run_stats(self):
        return {"preloaded_before_rank": Probe.seen}
'''


def test_a_cells_process_imports_numpy_before_anything_is_timed(toy, capsys, tmp_path, monkeypatch):
    """The suite's own process always has numpy; a fresh one must too, before ``rank`` is timed,
    or a ranker importing it lazily books the import as ranking (0.4 s: the random reranker's
    QPS on DL 2019 fell from about 2,200 to 119)."""
    from harness.isolation import PRELOAD

    assert "numpy" in PRELOAD
    (toy.root / "probe_rankers.py").write_text(PROBE)
    monkeypatch.syspath_prepend(str(toy.root))
    text = toy.config.read_text().replace("[suites.s]", '[rankers.probe]\nkind = "probe_rankers:Probe"\n\n[suites.s]')
    toy.config.write_text(text.replace('rankers = ["first"', 'rankers = ["probe", "first"'))
    monkeypatch.setenv("RANKBENCH_HOME", str(tmp_path / "own"))
    code, out = toy.cli("run", "s", "--no-progress", "--no-report", "--ranker", "probe", capsys=capsys)
    assert code == 0, out
    e = _results(toy)["probe"]["efficiency"]
    assert e["process"]["own"] is True
    assert e["preloaded_before_rank"] == ["numpy"]
