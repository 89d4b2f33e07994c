"""Shared fixtures. Tests run offline, on the shipped real data, with a private cache home."""
from __future__ import annotations

import gzip
import json
import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATASETS = ROOT / "datasets"

# Offline and quiet, decided before anything imports the hub libraries.
os.environ["RANKBENCH_OFFLINE"] = "1"
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session", autouse=True)
def rankbench_home(tmp_path_factory):
    """One cache home for the whole session (indexes built once), never the user's."""
    home = tmp_path_factory.mktemp("rankbench-home")
    old = os.environ.get("RANKBENCH_HOME"), os.environ.get("IR_DATASETS_HOME")
    os.environ["RANKBENCH_HOME"] = str(home)
    os.environ["IR_DATASETS_HOME"] = str(home / "ir_datasets")
    yield home
    for key, value in zip(("RANKBENCH_HOME", "IR_DATASETS_HOME"), old):
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def config():
    from harness.config import load_config

    return load_config(ROOT / "bench.toml")


def read_jsonl_gz(path: Path) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def write_beir(folder: Path, corpus: list[dict], queries: list[dict], qrels: dict[str, dict[str, int]],
               runs: dict[str, str] | None = None, meta: str | None = None) -> Path:
    """Write a dataset folder in the BEIR layout (plain files)."""
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    with open(folder / "corpus.jsonl", "w") as f:
        for d in corpus:
            f.write(json.dumps(d) + "\n")
    with open(folder / "queries.jsonl", "w") as f:
        for q in queries:
            f.write(json.dumps(q) + "\n")
    with open(folder / "qrels" / "test.tsv", "w") as f:
        f.write("query-id\tcorpus-id\tscore\n")
        for q, docs in qrels.items():
            for d, r in docs.items():
                f.write(f"{q}\t{d}\t{r}\n")
    for name, text in (runs or {}).items():
        (folder / "runs").mkdir(exist_ok=True)
        (folder / "runs" / f"{name}.trec").write_text(text)
    if meta:
        (folder / "dataset.toml").write_text(meta)
    return folder


@pytest.fixture(scope="session")
def scifact_sample(tmp_path_factory) -> Path:
    """A real slice of SciFact: 30 test queries, their relevant abstracts and 270 others."""
    src = DATASETS / "beir" / "scifact"
    qrels_all: dict[str, dict[str, int]] = {}
    with gzip.open(src / "qrels" / "test.tsv.gz", "rt") as f:
        next(f)
        for line in f:
            q, d, r = line.rstrip("\n").split("\t")
            qrels_all.setdefault(q, {})[d] = int(r)
    qids = sorted(qrels_all, key=int)[:30]
    qrels = {q: qrels_all[q] for q in qids}
    relevant = {d for q in qids for d in qrels[q]}
    corpus = read_jsonl_gz(src / "corpus.jsonl.gz")
    others = [d for d in corpus if d["_id"] not in relevant][:300 - len(relevant)]
    docs = [d for d in corpus if d["_id"] in relevant] + others
    queries = [q for q in read_jsonl_gz(src / "queries.jsonl.gz") if q["_id"] in qrels]
    folder = tmp_path_factory.mktemp("data") / "scifact-sample"
    return write_beir(folder, docs, queries, qrels,
                      meta='name = "SciFact sample"\nconventions = "beir"\n')


@pytest.fixture
def copy_dataset(tmp_path):
    """Copy a shipped dataset folder somewhere it may be damaged."""
    def _copy(rel: str) -> Path:
        dest = tmp_path / rel.replace("/", "_")
        shutil.copytree(DATASETS / rel, dest)
        return dest
    return _copy


@pytest.fixture(scope="session")
def tiny_cross_encoders(tmp_path_factory):
    """Untrained 2-layer cross-encoders from all-MiniLM-L6-v2, one per score head, saved as
    sentence-transformers folders (what a recipe's training starts from)."""
    from harness.recipes import RecipeSpec
    from rankers.train import build_cross_encoder

    root = tmp_path_factory.mktemp("cross-encoders")
    out = {}
    for head in ("segment-cosine", "classifier"):
        spec = RecipeSpec(name=f"tiny-{head}", head=head, layers=(0, 1), max_length=128, train=("none",))
        build_cross_encoder(spec).save(str(root / head))
        out[head] = root / head
    return out
