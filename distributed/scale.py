"""``rankbench scale --report``: reports/scale.md, what Ray buys and costs, measured here.

1. Encoding throughput of all-MiniLM-L6-v2 on real passages (MS MARCO passages from the DL 2019
   pool, SciFact abstracts): one process, then Ray Data with 1 and 2 actors, side by side in one
   run, each checked bit for bit against the one-process embeddings.
2. The executor's overhead: the smoke and quick suites run by the local executor and by
   ``--executor ray``, each in a fresh process on the same cache state (smoke: an empty cache;
   quick: the indexes and encoded corpora in place, no runs), wall time side by side.
3. A projection, from the measured per-actor throughput, of MS MARCO passage (8.8M) and all of
   BEIR on N CPU nodes and on N GPUs.
4. A simulated sharded run: NFCorpus's corpus cut into shards, each encoded as its own Ray Data
   job on a two-node ``ray.cluster_utils.Cluster``, put together, and ranked: the embeddings and
   nDCG@10 of one process.

The figures land in reports/results/scale.json; the markdown is rendered from it (``markdown``),
so a golden test can check the two agree.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

from harness.files import atomic_write_text

from .common import RESOURCE, require_ray, task_env

# corpus sizes from the BEIR paper (Thakur et al. 2021, table 1); the two shipped here are checked
BEIR_CORPORA = {
    "msmarco": 8_841_823, "trec-covid": 171_332, "nfcorpus": 3_633, "bioasq": 14_914_602, "nq": 2_681_468,
    "hotpotqa": 5_233_329, "fiqa": 57_638, "signal1m": 2_866_316, "trec-news": 594_977, "robust04": 528_155,
    "arguana": 8_674, "webis-touche2020": 382_545, "cqadupstack": 457_199, "quora": 522_931,
    "dbpedia-entity": 4_635_922, "scidocs": 25_657, "fever": 5_416_568, "climate-fever": 5_416_593,
    "scifact": 5_183,
}
# no GPU here: a stand-in from REFERENCE.md, the published V100 rate of the 6-layer MiniLM
# cross-encoder (a query-passage pair is about one passage's work for the 6-layer MiniLM encoder)
GPU_STANDIN = {"docs_per_s": 1800, "source": "cross-encoder/ms-marco-MiniLM-L-6-v2 on a V100 "
                                               "(sentence-transformers' table, REFERENCE.md)"}
RANKER = "minilm"


def _one_process(enc, texts: list[str]) -> tuple[object, float]:
    enc._encode(texts[:32], progress=False)           # warm-up: the model loaded, the first batch run
    t0 = time.perf_counter()
    emb = enc._encode(texts, progress=False)
    return emb, time.perf_counter() - t0


def measure_encoding(runner, config_path: str, reports: str, passages: int, log) -> list[dict]:
    import numpy as np

    from .encode import encode_texts, encoder_of

    runner.rankers.resolve(RANKER)
    enc = encoder_of(runner.instance(RANKER))
    env = task_env(runner.cache.home)
    out = []
    for ds_name, label in (("dl19", "MS MARCO passages (DL 2019 pool)"), ("scifact", "SciFact abstracts")):
        ds = runner.dataset(ds_name)
        ids, texts = enc.corpus_texts(ds)
        texts = texts[:passages]
        batches = enc.encode_batches(texts)
        want, secs = _one_process(enc, texts)
        rows = [{"mode": "one process (sentence-transformers, 2 threads)", "actors": 0, "seconds": round(secs, 2),
                 "passages_per_s": round(len(texts) / secs, 1), "identical": True}]
        log(f"scale: {ds_name}: one process {len(texts) / secs:.1f} passages/s")
        for actors in (1, 2):
            threads = max(1, (os.cpu_count() or 1) // actors)
            t0 = time.perf_counter()
            got = encode_texts(texts, batches, actors, RANKER, config_path, reports, threads, env)
            secs = time.perf_counter() - t0
            rows.append({"mode": f"Ray Data, {actors} actor{'s' if actors > 1 else ''} x {threads} thread{'s' if threads > 1 else ''}",
                         "actors": actors, "seconds": round(secs, 2), "passages_per_s": round(len(texts) / secs, 1),
                         "identical": bool(np.array_equal(got, want))})
            log(f"scale: {ds_name}: {actors} actors {len(texts) / secs:.1f} passages/s")
        out.append({"dataset": ds_name, "label": label, "passages": len(texts), "rows": rows,
                    "mean_chars": round(sum(map(len, texts)) / len(texts), 1)})
    return out


def _timed(cmd: list[str], env: dict, log) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    secs = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    log(f"scale: {' '.join(cmd[1:4])}: {secs:.1f} s")
    return secs


def measure_overhead(config_path: str, seed_home: Path, log) -> list[dict]:
    """Each suite run twice from the same cache state, local then Ray, in fresh processes."""
    exe = str(Path(sys.executable).parent / "rankbench")
    out = []
    with tempfile.TemporaryDirectory(prefix="rankbench-scale-") as tmp:
        tmp = Path(tmp)
        for suite, state in (("smoke", "empty cache: every index built, every cell ranked"),
                             ("quick", "every run cached, no result: every cell evaluated and written")):
            row = {"suite": suite, "state": state}
            for executor in ("local", "ray"):
                home = tmp / f"home-{suite}-{executor}"
                home.mkdir()
                if suite == "quick":
                    for area in ("bm25-pyserini", "bm25-bm25s", "bi-encoder-corpus", "models-offline", "runs"):
                        if (seed_home / area).is_dir():
                            shutil.copytree(seed_home / area, home / area)
                env = {**os.environ, "RANKBENCH_HOME": str(home)}
                cmd = [exe, "run", suite, "--config", config_path, "--reports", str(tmp / f"reports-{suite}-{executor}"),
                       "--no-progress", "--no-report"] + (["--executor", "ray"] if executor == "ray" else [])
                row[executor + "_s"] = round(_timed(cmd, env, log), 1)
            row["overhead_s"] = round(row["ray_s"] - row["local_s"], 1)
            row["ratio"] = round(row["ray_s"] / row["local_s"], 3)
            row["same_measures"] = _same_measures(tmp / f"reports-{suite}-local", tmp / f"reports-{suite}-ray", suite)
            out.append(row)
    return out


def _same_measures(a: Path, b: Path, suite: str) -> bool:
    def load(folder):
        return {p.name: json.loads(p.read_text()).get("measures") for p in sorted((folder / "results" / suite).glob("*.json"))}
    left, right = load(a), load(b)
    return bool(left) and left == right


def measure_sharded(config_path: str, seed_home: Path, shards: int, log) -> dict:
    """NFCorpus cut into shards, each its own Ray Data job on a two-node cluster; compared with
    the one-process entry in the seed cache and ranked through the same cell."""
    code = f"""
import json, sys, time
from distributed.common import require_ray
ray = require_ray()
import numpy as np
from ray.cluster_utils import Cluster
from harness.config import load_config
from harness.runner import Runner
from harness.cache import Cache
from pathlib import Path
from distributed.encode import encode_texts, encoder_of
from distributed.common import task_env
cluster = Cluster(initialize_head=True, head_node_args={{"num_cpus": 1, "resources": {{"{RESOURCE}": 1}}, "include_dashboard": False}})
cluster.add_node(num_cpus=1, resources={{"{RESOURCE}": 1}})
cluster.wait_for_nodes()
ray.init(address=cluster.address, log_to_driver=False)
config = load_config({config_path!r})
runner = Runner(config, Path(sys.argv[1]), progress=False)
runner.rankers.resolve("{RANKER}")
ds = runner.dataset("nfcorpus")
enc = encoder_of(runner.instance("{RANKER}"))
ids, texts = enc.corpus_texts(ds)
batches = enc.encode_batches(texts)
key = enc.corpus_key(ds)
one = Cache(Path({str(seed_home)!r})).get("bi-encoder-corpus", key)
want = np.load(one / "embeddings.npy")
per = (len(batches) + {shards} - 1) // {shards}
emb = np.zeros_like(want)
t0 = time.perf_counter()
seconds = []
for s in range({shards}):
    part = batches[s * per:(s + 1) * per]
    flat = [i for b in part for i in b]
    local = {{i: j for j, i in enumerate(flat)}}
    t1 = time.perf_counter()
    got = encode_texts([texts[i] for i in flat], [[local[i] for i in b] for b in part], 2, "{RANKER}",
                       {config_path!r}, sys.argv[1], 1, task_env(runner.cache.home))
    seconds.append(round(time.perf_counter() - t1, 2))
    emb[flat] = got
total = time.perf_counter() - t0
identical = bool(np.array_equal(emb, want))
with runner.cache.build("bi-encoder-corpus", key, {{"what": "encoded corpus", "encoded_on": "Ray Data, {shards} shards, 2 nodes"}}) as folder:
    np.save(folder / "embeddings.npy", emb)
    (folder / "doc_ids.txt").write_text("\\n".join(ids) + "\\n", encoding="utf-8")
suite = config.suite("quick")
out = runner.run_cell(suite, "{RANKER}", "nfcorpus")
result = json.loads((Path(sys.argv[1]) / "results" / "quick" / "{RANKER}__nfcorpus.json").read_text())
nodes = len([n for n in ray.nodes() if n["Alive"]])
print(json.dumps({{"passages": len(ids), "shards": {shards}, "nodes": nodes, "actors_per_shard": 2,
                  "shard_seconds": seconds, "seconds": round(total, 1), "identical": identical,
                  "max_abs_diff": float(np.abs(emb - want).max()),
                  "ndcg10": result["measures"]["aggregate"]["nDCG@10"]}}))
ray.shutdown(); cluster.shutdown()
"""
    with tempfile.TemporaryDirectory(prefix="rankbench-shards-") as tmp:
        home = Path(tmp) / "home"
        shutil.copytree(seed_home / "models-offline", home / "models-offline") if (seed_home / "models-offline").is_dir() else home.mkdir()
        env = {**os.environ, "RANKBENCH_HOME": str(home)}
        proc = subprocess.run([sys.executable, "-c", code, str(Path(tmp) / "reports")], env=env,
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"the sharded run failed: {proc.stderr[-3000:]}")
        got = json.loads(proc.stdout.strip().splitlines()[-1])
    log(f"scale: sharded NFCorpus: identical={got['identical']} nDCG@10={got['ndcg10']:.4f}")
    return got


def projection(encoding: list[dict], nodes: tuple[int, ...] = (1, 8, 64, 256)) -> dict:
    """Hours to encode MS MARCO passage and all of BEIR, from the measured rates: per CPU node
    (this machine's best rate: 2 cores), and per GPU (the stand-in rate); linear in N, which
    assumes nothing else bounds the job (the reading, the writing, the shared filesystem)."""
    rates = {}
    for e in encoding:
        best = max(r["passages_per_s"] for r in e["rows"])
        rates[e["dataset"]] = best
    cpu = rates.get("dl19") or next(iter(rates.values()))
    beir_all = sum(BEIR_CORPORA.values())
    corpora = {"MS MARCO passage": BEIR_CORPORA["msmarco"], "all of BEIR (its 18 corpora and MS MARCO)": beir_all}
    rows = []
    for name, size in corpora.items():
        rows.append({"corpus": name, "passages": size,
                     "cpu_node_hours": {str(n): round(size / (cpu * n) / 3600, 2) for n in nodes},
                     "gpu_hours": {str(n): round(size / (GPU_STANDIN["docs_per_s"] * n) / 3600, 2) for n in nodes}})
    return {"cpu_rate": cpu, "cpu_rate_from": "dl19", "gpu": GPU_STANDIN, "nodes": list(nodes), "rows": rows}


def measure(config_path: str, reports: Path, passages: int = 512, shards: int = 4,
            log: Callable[[str], None] | None = None) -> dict:
    ray = require_ray()

    from harness.cache import Cache
    from harness.config import load_config
    from harness.provenance import machine
    from harness.runner import Runner

    log = log or (lambda m: print(m, file=sys.stderr, flush=True))
    config = load_config(config_path)
    seed = Cache().home
    runner = Runner(config, reports, progress=False)
    for name in ("scifact", "nfcorpus"):
        got = len(runner.dataset(name).corpus())
        if got != BEIR_CORPORA[name]:
            raise RuntimeError(f"{name}: the shipped corpus has {got} passages, the BEIR paper {BEIR_CORPORA[name]}")
    data = {"machine": machine(), "ray": ray.__version__, "device": "CPU only: no GPU was lent to this session"}
    ray.init(num_cpus=os.cpu_count() or 1, resources={RESOURCE: 1.0}, include_dashboard=False, log_to_driver=False)
    try:
        data["encoding"] = measure_encoding(runner, config_path, str(reports), passages, log)
    finally:
        ray.shutdown()
    data["projection"] = projection(data["encoding"])
    data["overhead"] = measure_overhead(config_path, seed, log)
    data["sharded"] = measure_sharded(config_path, seed, shards, log)
    return data


def markdown(data: dict) -> str:
    m = data["machine"]
    lines = ["# Scale: rankbench on Ray", "",
             f"Measured on one machine ({m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB), {data['device']}; "
             f"Ray {data['ray']}. Regenerate with `rankbench scale --report` (about 20 minutes). "
             f"Figures in one run, side by side; these machines are noisy, so read the ratios.", "",
             "## Encoding throughput", "",
             "all-MiniLM-L6-v2 (torch, sentence-transformers), the same passages each way. Ray Data rows are the "
             "encoder's own length-sorted batches, so every mode gives the one-process embeddings bit for bit "
             "(`identical`). Ray times include starting the actors and loading a model in each.", ""]
    for e in data["encoding"]:
        lines += [f"**{e['label']}** ({e['passages']} passages, {e['mean_chars']} characters on average)", "",
                  "| mode | seconds | passages/s | vs one process | identical |", "|---|---:|---:|---:|---|"]
        base = e["rows"][0]["passages_per_s"]
        for r in e["rows"]:
            lines.append(f"| {r['mode']} | {r['seconds']:.1f} | {r['passages_per_s']:.1f} | "
                         f"{r['passages_per_s'] / base:.2f}x | {'yes' if r['identical'] else 'NO'} |")
        lines.append("")
    lines += ["On 2 cores, one process already uses both: more actors cannot add throughput here, only split it. "
              "Actors pay off across nodes, where each brings its own cores (the projection below).", "",
              "## The executor's overhead", "",
              "Each suite run by the local executor and by `--executor ray` (a Ray cluster started on this machine), "
              "each in a fresh process from the same cache state; `--no-report`.", "",
              "| suite | cache state | local s | ray s | overhead s | ray / local | same measures |",
              "|---|---|---:|---:|---:|---:|---|"]
    for r in data["overhead"]:
        lines.append(f"| {r['suite']} | {r['state']} | {r['local_s']:.1f} | {r['ray_s']:.1f} | {r['overhead_s']:+.1f} | "
                     f"{r['ratio']:.2f} | {'yes' if r['same_measures'] else 'NO'} |")
    p = data["projection"]
    cols = " | ".join(f"{n} node{'s' if n > 1 else ''}" for n in p["nodes"])
    gcols = " | ".join(f"{n} GPU{'s' if n > 1 else ''}" for n in p["nodes"])
    lines += ["", "Ray costs its start (about 7 s), a worker process per task environment, and each worker "
              "loading its own datasets and models; timed cells run one at a time per node.", "",
              "## Projection: encoding MS MARCO and BEIR", "",
              f"Hours to encode, linear in the number of nodes from the best rate measured above on MS MARCO passages "
              f"({p['cpu_rate']:.1f} passages/s per 2-core node). No GPU was lent to this session: the GPU rows use "
              f"a stand-in of {p['gpu']['docs_per_s']} passages/s per GPU, {p['gpu']['source']}. Linear scaling assumes "
              f"nothing else bounds the job: reading the corpus, writing embeddings to the shared filesystem and "
              f"the driver gathering them are not in it. Corpus sizes from the BEIR paper (the shipped SciFact "
              f"and NFCorpus match it).", "",
              f"| corpus | passages | {cols} |", "|---|---:|" + "---:|" * len(p["nodes"])]
    for r in p["rows"]:
        lines.append(f"| {r['corpus']}, CPU nodes | {r['passages']:,} | " +
                     " | ".join(f"{r['cpu_node_hours'][str(n)]:,.1f}" for n in p["nodes"]) + " |")
    lines += ["", f"| corpus | passages | {gcols} |", "|---|---:|" + "---:|" * len(p["nodes"])]
    for r in p["rows"]:
        lines.append(f"| {r['corpus']}, GPUs (stand-in rate) | {r['passages']:,} | " +
                     " | ".join(f"{r['gpu_hours'][str(n)]:,.2f}" for n in p["nodes"]) + " |")
    s = data["sharded"]
    lines += ["", "## A sharded run, simulated", "",
              f"NFCorpus's corpus ({s['passages']:,} passages) cut into {s['shards']} shards, each encoded as its own "
              f"Ray Data job ({s['actors_per_shard']} actors) on a {s['nodes']}-node `ray.cluster_utils.Cluster` on this "
              f"machine, put together into the cache entry, then ranked by the minilm cell (torch).", "",
              "| shards | seconds per shard | total s | embeddings identical to one process | max abs diff | nDCG@10 |",
              "|---:|---|---:|---|---:|---:|",
              f"| {s['shards']} | {', '.join(f'{x:.1f}' for x in s['shard_seconds'])} | {s['seconds']:.1f} | "
              f"{'yes' if s['identical'] else 'NO'} | {s['max_abs_diff']:.1e} | {s['ndcg10']:.4f} |", "",
              "The one-process nDCG@10 of minilm on NFCorpus is in [reports/beir.md](beir.md) (MTEB's 0.3159).", ""]
    q = data.get("quick_suite")
    if q:
        lines += ["## The quick suite on Ray, against the local executor", "",
                  f"`rankbench run quick --executor ray` and `rankbench run quick` from the same commit "
                  f"(`{q['commit'][:12]}`), each from an empty cache and an empty results folder on this machine "
                  f"(the Ray run on a one-node local cluster, its corpora encoded on Ray Data), compared file by file.",
                  "", "| | local | Ray |", "|---|---:|---:|",
                  f"| wall time (minutes) | {q['local_min']:.1f} | {q['ray_min']:.1f} |",
                  f"| cells ran / not applicable | {q['ran']} / {q['na']} | {q['ran']} / {q['na']} |", "",
                  f"- result JSON measures and cell fingerprints identical: {q['same_cells']} of {q['ran']} cells",
                  f"- run files identical byte for byte: {q['same_runs']} of {q['runs']} runs (every run either made)",
                  f"- encoded corpora identical byte for byte: {q['same_corpora']} of {q['corpora']}", "",
                  q["note"], ""]
    return "\n".join(lines)


def write(reports: Path, data: dict) -> Path:
    results = reports / "results" / "scale.json"
    results.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(results, json.dumps(data, indent=1, sort_keys=True) + "\n")
    out = reports / "scale.md"
    atomic_write_text(out, markdown(data))
    return out
