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
# Ray's own SIGSEGV handler would catch the JVM's deliberate ones (distributed.common), whichever
# of the two a test session starts first
os.environ["RAY_DISABLE_FAILURE_SIGNAL_HANDLER"] = "1"


# The fast loop (`make fast`, RANKBENCH_TEST_TIER=fast) leaves the heavy tiers out. There, importing
# what a tier stands for is an error naming the marker the test needs, so the tiers stay true.
TIERS = {"models": ("torch", "onnxruntime", "sentence_transformers", "transformers", "onnx"),
         "jvm": ("jnius", "pyserini"), "ray": ("ray",)}
FAST = os.environ.get("RANKBENCH_TEST_TIER") == "fast"


def default_sigint() -> None:
    """preexec_fn for a child that a test interrupts: a test session started with SIGINT ignored
    (under nohup, or from a background job) passes that on, and Python then never installs its
    KeyboardInterrupt handler; the child starts with the default, as from a terminal."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


class TierViolation(ModuleNotFoundError):
    pass


class _TierBlocker:
    """A meta-path finder that refuses the heavy tiers' libraries in the fast loop."""

    def find_spec(self, name, path=None, target=None):
        top = name.split(".")[0]
        for tier, modules in TIERS.items():
            if top in modules:
                raise TierViolation(f"the fast loop imports {top}: mark the test @pytest.mark.{tier}")
        return None


if FAST:
    import sys

    sys.meta_path.insert(0, _TierBlocker())


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


def judged_slice(src: Path, n: int) -> tuple[dict, list[dict], list[dict], list[dict]]:
    """A shipped dataset's first n judged queries (by numeric id): their qrels and queries, their
    judged documents, and every other document, both in corpus order."""
    qrels_all: dict[str, dict[str, int]] = {}
    with gzip.open(src / "qrels" / "test.tsv.gz", "rt") as f:
        next(f)
        for line in f:
            q, d, r = line.rstrip("\n").split("\t")
            qrels_all.setdefault(q, {})[d] = int(r)
    qrels = {q: qrels_all[q] for q in sorted(qrels_all, key=int)[:n]}
    relevant = {d for q in qrels for d in qrels[q]}
    corpus = read_jsonl_gz(src / "corpus.jsonl.gz")
    queries = [q for q in read_jsonl_gz(src / "queries.jsonl.gz") if q["_id"] in qrels]
    return (qrels, queries, [d for d in corpus if d["_id"] in relevant],
            [d for d in corpus if d["_id"] not in relevant])


@pytest.fixture(scope="session")
def scifact_sample(tmp_path_factory) -> Path:
    """A real slice of SciFact: 30 test queries, their relevant abstracts and 270 others."""
    qrels, queries, relevant, others = judged_slice(DATASETS / "beir" / "scifact", 30)
    folder = tmp_path_factory.mktemp("data") / "scifact-sample"
    return write_beir(folder, relevant + others[:300 - len(relevant)], queries, qrels,
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
    from harness.recipe_spec import RecipeSpec
    from training.trainer import build_cross_encoder

    root = tmp_path_factory.mktemp("cross-encoders")
    out = {}
    for head in ("segment-cosine", "classifier"):
        spec = RecipeSpec(name=f"tiny-{head}", head=head, layers=(0, 1), max_length=128, train=("none",))
        build_cross_encoder(spec).save(str(root / head))
        out[head] = root / head
    return out


TOY_CONFIG = """\
[settings]
latency_queries = 3
latency_warmup = 1

[datasets]
toy = "local:data/toy"

[rankers.first]
kind = "run"
run = "first"
description = "a word-overlap run shipped with the toy set"

[rankers.oracle-first]
kind = "oracle"
first_stage = "first"
depth = 20

[rankers.random-first]
kind = "random"
first_stage = "first"
depth = 20

[rankers.bm25s]
kind = "bm25"
backend = "bm25s"

[suites.s]
rankers = ["first", "bm25s", "oracle-first", "random-first"]
datasets = ["toy"]
baseline = "first"
"""


class ToyProject:
    """A project folder of its own: bench.toml, a real slice of Vaswani (plain files, so a test
    may damage any line), a shipped run, and a reports folder."""

    def __init__(self, root: Path):
        self.root = root
        self.config = root / "bench.toml"
        self.data = root / "data" / "toy"
        self.reports = root / "reports"

    def file(self, rel: str) -> Path:
        return self.data / rel

    def lines(self, rel: str) -> list[str]:
        return self.file(rel).read_text(encoding="utf-8").splitlines(keepends=True)

    def set_line(self, rel: str, n: int, text: str) -> None:
        """Replace line n (1-based) of a data file."""
        lines = self.lines(rel)
        lines[n - 1] = text if text.endswith("\n") else text + "\n"
        self.file(rel).write_text("".join(lines), encoding="utf-8")

    def cli(self, *args: str, capsys=None) -> tuple[int, str]:
        """rankbench ARGS on this project, in this process: (exit code, stdout + stderr)."""
        from harness.cli import main

        argv = list(args)
        if argv[0] not in ("manifest",) and "--config" not in argv:
            argv += ["--config", str(self.config)]
        code = main(argv)
        out = capsys.readouterr() if capsys else None
        return code, (out.out + out.err) if out else ""


def _overlap_run(queries: dict[str, str], corpus: dict[str, dict], depth: int = 20) -> str:
    lines = []
    for qid, text in queries.items():
        terms = set(text.split())
        scores = {d: len(terms & set(doc["text"].split())) + 1e-3 * (i % 7) for i, (d, doc) in enumerate(corpus.items())}
        ranked = sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))[:depth]
        lines += [f"{qid} Q0 {d} {r} {s:.3f} overlap\n" for r, (d, s) in enumerate(ranked, 1)]
    return "".join(lines)


@pytest.fixture(scope="session")
def toy_source(tmp_path_factory) -> Path:
    """Vaswani's first 6 judged queries, their relevant documents and 40 others, and a run."""
    qrels, queries, relevant, others = judged_slice(DATASETS / "vaswani", 6)
    docs = relevant + others[:40]
    folder = tmp_path_factory.mktemp("toy") / "toy"
    run = _overlap_run({q["_id"]: q["text"] for q in queries}, {d["_id"]: d for d in docs})
    return write_beir(folder, docs, queries, qrels, runs={"first": run},
                      meta='name = "Vaswani slice"\nconventions = "generic"\n')


@pytest.fixture
def toy(tmp_path, toy_source) -> ToyProject:
    project = ToyProject(tmp_path / "project")
    shutil.copytree(toy_source, project.data)
    project.config.write_text(TOY_CONFIG)
    project.reports.mkdir()
    return project


@pytest.fixture(scope="session")
def ray_cluster():
    """One Ray session for the whole test session (it takes seconds to start and most of a GiB):
    a two-node cluster on this machine (ray.cluster_utils.Cluster), one CPU and one
    ``rankbench_node`` each, which the driver joins."""
    from distributed.common import RESOURCE, require_ray

    ray = require_ray()     # with the JVM's signals kept: the JVM tests share this process
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "resources": {RESOURCE: 1},
                                                            "include_dashboard": False})
    cluster.add_node(num_cpus=1, resources={RESOURCE: 1})
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    yield cluster
    ray.shutdown()
    cluster.shutdown()
