"""Datasets: the shipped copies, the local: loader's errors, and the irds: path."""
import gzip
import time
from pathlib import Path

import pytest

from conftest import DATASETS, ROOT, write_beir
from harness.data import DatasetSpec, LocalDataset, IrdsDataset, open_dataset, seed_irds, write_manifest
from harness.errors import ConfigError, DataError


def local(folder, name="t", split="test", conventions=None):
    return LocalDataset(DatasetSpec(name, f"local:{folder}", split=split, conventions=conventions), Path("/"))


@pytest.mark.parametrize("rel, queries, docs, judgments, runs", [
    ("trec-dl-2019", 43, 16836, 9260, 6),
    ("trec-dl-2020", 54, 15495, 11386, 6),
    ("beir/scifact", 300, 5183, 339, 0),
    ("beir/nfcorpus", 323, 3633, 12334, 0),
    ("vaswani", 93, 11429, 2083, 0),
])
def test_shipped_datasets_load_with_their_documented_sizes(rel, queries, docs, judgments, runs):
    ds = local(DATASETS / rel)
    assert ds.stats() == {"queries": queries, "judgments": judgments, "docs": docs}
    assert len(ds.run_names()) == runs
    assert ds.manifest is not None            # every shipped file is checksummed


def test_shipped_conventions_come_from_each_dataset():
    assert local(DATASETS / "trec-dl-2019").conventions.name == "trec-dl"
    assert local(DATASETS / "trec-dl-2019").conventions.measures[1] == "RR(rel=2)@10"
    assert local(DATASETS / "trec-dl-2019").rerank_only
    assert local(DATASETS / "beir/scifact").conventions.drop_self_hits
    assert not local(DATASETS / "trec-dl-2020").conventions.drop_self_hits


def test_other_splits_of_the_same_folder():
    train = local(DATASETS / "beir/nfcorpus", split="train")
    dev = local(DATASETS / "beir/nfcorpus", split="dev")
    assert len(train.queries()) == 2590 and len(dev.queries()) == 324
    # the corpus is shared, so indexes key on it, not on the split
    assert train.corpus_fingerprint() == dev.corpus_fingerprint()
    assert train.fingerprint() != dev.fingerprint()


def test_a_changed_byte_fails_the_manifest_check(copy_dataset):
    folder = copy_dataset("beir/scifact")
    path = folder / "queries.jsonl.gz"
    data = gzip.decompress(path.read_bytes()).replace(b"0-dimensional", b"1-dimensional", 1)
    path.write_bytes(gzip.compress(data, mtime=0))
    with pytest.raises(DataError, match=r"queries\.jsonl\.gz: sha256 .* does not match MANIFEST\.tsv"):
        local(folder).queries()


def test_a_file_missing_from_the_manifest_is_refused(copy_dataset):
    folder = copy_dataset("trec-dl-2019")
    (folder / "runs" / "mine.trec").write_text("264014 Q0 5611210 1 1.0 mine\n")
    with pytest.raises(DataError, match="not listed in .*MANIFEST.tsv.*rankbench manifest"):
        local(folder).load_run("mine")
    write_manifest(folder)                      # the documented fix works
    assert local(folder).load_run("mine") == {"264014": {"5611210": 1.0}}


def test_local_loader_matches_beirs_own_loader_on_scifact(tmp_path):
    from beir.datasets.data_loader import GenericDataLoader

    src = DATASETS / "beir/scifact"
    plain = tmp_path / "scifact"
    (plain / "qrels").mkdir(parents=True)
    for rel in ("corpus.jsonl", "queries.jsonl", "qrels/test.tsv"):
        (plain / rel).write_bytes(gzip.decompress((src / (rel + ".gz")).read_bytes()))
    corpus, queries, qrels = GenericDataLoader(str(plain)).load(split="test")
    ours = local(src)
    assert ours.qrels() == qrels
    assert ours.queries() == queries
    assert {k: {"title": d.title, "text": d.text} for k, d in ours.corpus().items()} == corpus


# -- bad input: a clear error naming file and line ---------------------------------------------

def _sample(tmp_path, corpus=None, queries=None, qrels=None, runs=None):
    corpus = corpus or [{"_id": "d1", "title": "", "text": "alpha beta"}, {"_id": "d2", "title": "t", "text": "gamma"}]
    queries = queries or [{"_id": "q1", "text": "alpha"}]
    qrels = qrels or {"q1": {"d1": 1}}
    return write_beir(tmp_path / "ds", corpus, queries, qrels, runs)


def test_invalid_json_names_file_and_line(tmp_path):
    folder = _sample(tmp_path)
    with open(folder / "corpus.jsonl", "a") as f:
        f.write('{"_id": "d3", "text": "unterminated\n')
    with pytest.raises(DataError, match=r"corpus\.jsonl:3: invalid JSON"):
        local(folder).corpus()


def test_duplicate_doc_id_names_both_lines(tmp_path):
    folder = _sample(tmp_path, corpus=[{"_id": "d1", "text": "a"}, {"_id": "d2", "text": "b"},
                                       {"_id": "d1", "text": "c"}])
    with pytest.raises(DataError, match=r"corpus\.jsonl:3: duplicate document id 'd1' \(first on line 1\)"):
        local(folder).corpus()


def test_duplicate_query_id(tmp_path):
    folder = _sample(tmp_path, queries=[{"_id": "q1", "text": "a"}, {"_id": "q1", "text": "b"}])
    with pytest.raises(DataError, match=r"queries\.jsonl:2: duplicate query id 'q1'"):
        local(folder).queries()


def test_document_without_id_or_text(tmp_path):
    folder = _sample(tmp_path, corpus=[{"_id": "d1", "text": "a"}, {"text": "no id"}])
    with pytest.raises(DataError, match=r"corpus\.jsonl:2: document has no \"_id\""):
        local(folder).corpus()
    folder = _sample(tmp_path / "b", corpus=[{"_id": "d1", "title": "only a title"}])
    with pytest.raises(DataError, match=r"corpus\.jsonl:1: document 'd1' needs a string \"text\""):
        local(folder).corpus()


def test_empty_query_is_refused_with_its_line(tmp_path):
    folder = _sample(tmp_path, queries=[{"_id": "q0", "text": "fine"}, {"_id": "q1", "text": "   "}])
    with pytest.raises(DataError, match=r"queries\.jsonl:2: query 'q1' is empty"):
        local(folder).queries()


def test_malformed_qrels_lines(tmp_path):
    folder = _sample(tmp_path)
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\n")
    with pytest.raises(DataError, match=r"test\.tsv:2: expected query-id<TAB>corpus-id<TAB>score, found 2"):
        local(folder).qrels()
    (folder / "qrels" / "test.tsv").write_text("q1\td1\thigh\n")
    with pytest.raises(DataError, match=r"test\.tsv:1: relevance must be an integer, found 'high'"):
        local(folder).qrels()
    (folder / "qrels" / "test.tsv").write_text("q1\td1\t1\nq1\td1\t2\n")
    with pytest.raises(DataError, match=r"test\.tsv:2: query 'q1' doc 'd1' judged twice"):
        local(folder).qrels()


def test_judged_query_without_text(tmp_path):
    folder = _sample(tmp_path, qrels={"q1": {"d1": 1}, "q9": {"d2": 1}})
    with pytest.raises(DataError, match="query 'q9' is judged but has no text"):
        local(folder).queries()


def test_malformed_run_lines(tmp_path):
    folder = _sample(tmp_path, runs={"r": "q1 Q0 d1 1 2.5 r\nq1 Q0 d2 2 x r\n"})
    with pytest.raises(DataError, match=r"r\.trec:2: rank must be an integer and score a number"):
        local(folder).load_run("r")
    (folder / "runs" / "r.trec").write_text("q1 Q0 d1 1 2.5\n")
    with pytest.raises(DataError, match=r"r\.trec:1: a TREC run line has 6 columns"):
        local(folder).load_run("r")
    (folder / "runs" / "r.trec").write_text("q1 Q0 d1 1 2.5 r\nq1 Q0 d1 2 1.5 r\n")
    with pytest.raises(DataError, match=r"r\.trec:2: doc 'd1' appears twice for query 'q1'"):
        local(folder).load_run("r")
    (folder / "runs" / "r.trec").write_text("q1 Q0 d7 1 2.5 r\n")
    with pytest.raises(DataError, match="ranks doc 'd7', which is not in the corpus"):
        local(folder).load_run("r")
    with pytest.raises(DataError, match=r'unknown first-stage run "s".*known: r'):
        local(folder).load_run("s")


def test_missing_files_and_folders(tmp_path):
    folder = _sample(tmp_path)
    (folder / "corpus.jsonl").unlink()
    with pytest.raises(DataError, match=r"missing corpus\.jsonl \(or corpus\.jsonl\.gz\)"):
        local(folder).corpus()
    with pytest.raises(ConfigError, match="folder .*nowhere not found"):
        local(tmp_path / "nowhere")
    with pytest.raises(DataError, match=r"missing qrels/dev\.tsv"):
        local(folder, split="dev").qrels()


def test_plain_and_gzipped_copies_of_one_file_are_ambiguous(tmp_path):
    folder = _sample(tmp_path)
    (folder / "queries.jsonl.gz").write_bytes(gzip.compress((folder / "queries.jsonl").read_bytes()))
    with pytest.raises(DataError, match="both queries.jsonl and queries.jsonl.gz exist"):
        local(folder).queries()


def test_unknown_key_in_dataset_toml(tmp_path):
    folder = _sample(tmp_path)
    (folder / "dataset.toml").write_text('conventons = "beir"\n')
    with pytest.raises(DataError, match=r'unknown key "conventons" \(did you mean "conventions"\?\)'):
        local(folder)


# -- irds: ---------------------------------------------------------------------------------------

def irds(irds_id, seed=None, name="x"):
    return IrdsDataset(DatasetSpec(name, f"irds:{irds_id}", seed_from=seed), ROOT)


def test_irds_scifact_seeded_offline_gives_the_local_data():
    via_irds = irds("beir/scifact/test", seed="datasets/beir/scifact")
    via_local = local(DATASETS / "beir/scifact")
    assert via_irds.queries() == via_local.queries()
    assert via_irds.qrels() == via_local.qrels()
    assert dict(via_irds.corpus()) == dict(via_local.corpus())
    assert via_irds.conventions.name == "beir"
    some = sorted(via_local.corpus())[:5]
    assert via_irds.docs(some) == {d: via_local.corpus()[d] for d in some}   # ir_datasets' docstore
    assert via_irds.fingerprint() != via_local.fingerprint()                 # two routes, two cache keys


def test_irds_trec_dl_2019_judged_queries_and_qrels():
    via_irds = irds("msmarco-passage/trec-dl-2019/judged", seed="datasets/trec-dl-2019")
    via_local = local(DATASETS / "trec-dl-2019")
    assert via_irds.queries() == via_local.queries()
    assert via_irds.qrels() == via_local.qrels()
    assert via_irds.conventions.name == "trec-dl"


def test_irds_msmarco_dev_small_queries_and_qrels():
    via_irds = irds("msmarco-passage/dev/small", seed="datasets/msmarco-passage-dev-small")
    via_local = local(DATASETS / "msmarco-passage-dev-small")
    assert len(via_irds.queries()) == 6980
    assert via_irds.qrels() == via_local.qrels()
    with pytest.raises(DataError, match="ships queries and qrels only"):
        via_local.corpus()


def test_irds_documents_that_cannot_be_had_offline_fail_fast_and_say_why():
    ds = irds("msmarco-passage/trec-dl-2020/judged")        # nothing seeded
    t0 = time.perf_counter()
    with pytest.raises(DataError, match="ir_datasets could not provide the qrels.*seed_from"):
        ds.qrels()
    assert time.perf_counter() - t0 < 20


def test_unknown_irds_id_suggests_the_nearest():
    with pytest.raises(ConfigError, match=r'unknown ir_datasets id "beir/scifakt/test" \(did you mean "beir/scifact/test"\?\)'):
        irds("beir/scifakt/test").queries()


def test_seeding_never_overwrites(tmp_path):
    home = tmp_path / "irds"
    first = seed_irds("beir/nfcorpus/test", DATASETS / "beir/nfcorpus", home)
    assert [Path(p).name for p in first] == ["source.zip"]
    assert seed_irds("beir/nfcorpus/test", DATASETS / "beir/nfcorpus", home) == []
    with pytest.raises(DataError, match="not supported"):
        seed_irds("vaswani", DATASETS / "vaswani", home)


def test_open_dataset_refuses_an_unknown_scheme():
    with pytest.raises(ConfigError, match="must start with local: or irds:"):
        open_dataset(DatasetSpec("x", "hf:beir/scifact"), ROOT)


def test_ir_datasets_lives_in_rankbenchs_home_even_without_its_variable(tmp_path):
    """Fingerprinting an irds: dataset first (as the runner does) must not send ir_datasets to ~."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "IR_DATASETS_HOME"}
    env.update(HOME=str(tmp_path / "home"), RANKBENCH_HOME=str(tmp_path / "rb"))
    code = ("from pathlib import Path\n"
            "from harness.data import DatasetSpec, IrdsDataset\n"
            "ds = IrdsDataset(DatasetSpec('x', 'irds:beir/scifact/test', seed_from='datasets/beir/scifact'), Path('.'))\n"
            "ds.fingerprint()\n"
            "print(len(ds.queries()))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "300"
    assert (tmp_path / "rb" / "ir_datasets" / "beir" / "scifact" / "source.zip").exists()
    assert not (tmp_path / "home" / ".ir_datasets").exists()
