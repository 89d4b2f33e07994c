"""Load benchmark of rankbench serve, measured in one run: reports/serving.md.

    .venv/bin/python scripts/serve_load.py [--ranker minilm-int8-rerank-bm25run] [--clients 50] [--seconds 60]

The server (the real app on uvicorn, 127.0.0.1, an ephemeral port) serves the ranker; ``--clients``
concurrent clients send DL 2020 ``/rerank`` requests (a judged query and the published BM25 run's
top ``--depth`` passages for it, queries in turn) for ``--seconds`` seconds, each client sending its
next request when its last one is answered, and stop by themselves (bounded in time and in
``--max-requests``). Then, in the same process: the cache-hit path (the same request again, each
query once, timed one at a time against the same queries missed one at a time), and the same
ranker's offline batch throughput (every pair of the same queries through RankService.rerank_batch
in one call, no HTTP, no queue). The machine's CPU and cores are named in the report.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def percentile(xs, q):
    from harness.runner import percentile as p

    return p(list(xs), q)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ranker", default="minilm-int8-rerank-bm25run")
    ap.add_argument("--dataset", default="dl20")
    ap.add_argument("--depth", type=int, default=100)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--max-requests", type=int, default=20_000)
    ap.add_argument("--out", default=str(ROOT / "reports" / "serving.md"))
    ap.add_argument("--embed-ranker", default="minilm", help="the bi-encoder whose /v1/embeddings is measured")
    ap.add_argument("--embed-seconds", type=float, default=30.0)
    ap.add_argument("--no-infinity", action="store_true", help="skip infinity-emb's side")
    args = ap.parse_args()

    import httpx
    import uvicorn

    from harness.config import load_config
    from harness.provenance import provenance
    from serving.app import create_app
    from serving.service import RankService, RerankItem, ServeSettings

    config = load_config(ROOT / "bench.toml")
    service = RankService(config, args.ranker, settings=ServeSettings(cache_entries=100_000),
                          log=lambda m: print(m, file=sys.stderr))
    ds = service._search_runner.dataset(args.dataset)
    run = ds.load_run("bm25")
    queries = ds.queries()
    from harness.types import ranked

    qids = [q for q in sorted(queries) if q in run and q in ds.qrels()]
    docs = ds.docs({d for q in qids for d, _ in ranked(run[q])[:args.depth]})
    bodies = [{"query": queries[q], "documents": [docs[d].joined() for d, _ in ranked(run[q])[:args.depth]]}
              for q in qids]

    app = create_app(service)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    url = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"

    # warm-up: each query once (this also fills the cache for the hit path below; the load uses
    # variants of the query text so that nothing under load is a cache hit)
    with httpx.Client(timeout=120) as c:
        for b in bodies[:3]:
            c.post(f"{url}/rerank", json={**b, "query": b["query"] + " warmup"}).raise_for_status()

    latencies: list[float] = []
    codes: dict[int, int] = {}
    sent = [0]

    async def client(i: int, stop: float, http):
        n = 0
        while time.perf_counter() < stop and sent[0] < args.max_requests:
            sent[0] += 1
            b = bodies[(i + n * args.clients) % len(bodies)]
            body = {**b, "query": f"{b['query']} [{i}.{n}]"}      # a miss: never served before
            t0 = time.perf_counter()
            try:
                r = await http.post(f"{url}/rerank", json=body)
                codes[r.status_code] = codes.get(r.status_code, 0) + 1
                if r.status_code == 200:
                    latencies.append((time.perf_counter() - t0) * 1000)
            except httpx.HTTPError as e:
                codes[type(e).__name__] = codes.get(type(e).__name__, 0) + 1
            n += 1

    async def load():
        limits = httpx.Limits(max_connections=args.clients, max_keepalive_connections=args.clients)
        async with httpx.AsyncClient(timeout=120, limits=limits) as http:
            t0 = time.perf_counter()
            stop = t0 + args.seconds
            await asyncio.gather(*(client(i, stop, http) for i in range(args.clients)))
            return time.perf_counter() - t0

    wall = asyncio.run(load())
    ok = len(latencies)
    pairs_under_load = ok * args.depth / wall

    # the cache-hit path against misses, one request at a time
    miss_ms, hit_ms = [], []
    with httpx.Client(timeout=120) as c:
        for b in bodies[:20]:
            body = {**b, "query": b["query"] + " [hit path]"}
            t0 = time.perf_counter()
            c.post(f"{url}/rerank", json=body).raise_for_status()
            miss_ms.append((time.perf_counter() - t0) * 1000)
            t0 = time.perf_counter()
            r = c.post(f"{url}/rerank", json=body)
            hit_ms.append((time.perf_counter() - t0) * 1000)
            assert "x-inference-time-ms" not in r.headers
        metrics = c.get(f"{url}/metrics").text
    server.should_exit = True
    thread.join(30)

    # offline batch throughput: the same ranker, every pair of the same queries in one call
    items = [RerankItem(b["query"], b["documents"]) for b in bodies]
    t0 = time.perf_counter()
    service.rerank_batch(items, [None] * len(items))
    offline_s = time.perf_counter() - t0
    offline_pairs = sum(len(i.texts) for i in items) / offline_s

    embeddings = embed_side_by_side(args, config, bodies)

    batches = float(next(l.split()[-1] for l in metrics.splitlines() if l.startswith("rankbench_batch_items_count")))
    batch_sum = float(next(l.split()[-1] for l in metrics.splitlines() if l.startswith("rankbench_batch_items_sum")))
    prov = provenance(ROOT)
    m = prov["machine"]
    figures = {
        "ranker": args.ranker, "fingerprint": service.fingerprint, "dataset": args.dataset, "depth": args.depth,
        "clients": args.clients, "seconds": round(wall, 1), "requests_ok": ok,
        "errors": {str(k): v for k, v in codes.items() if k != 200},
        "latency_ms": {"p50": round(percentile(latencies, 50), 1), "p95": round(percentile(latencies, 95), 1),
                       "p99": round(percentile(latencies, 99), 1)} if latencies else None,
        "requests_per_s": round(ok / wall, 2), "pairs_per_s_under_load": round(pairs_under_load, 1),
        "pairs_per_s_offline": round(offline_pairs, 1), "load_over_offline": round(pairs_under_load / offline_pairs, 3),
        "mean_requests_per_batch": round(batch_sum / batches, 2) if batches else None,
        "cache": {"miss_p50_ms": round(statistics.median(miss_ms), 2), "hit_p50_ms": round(statistics.median(hit_ms), 2),
                  "speedup": round(statistics.median(miss_ms) / statistics.median(hit_ms), 1)},
        "machine": {"id": m["id"], "cpu": m["cpu"], "cores": m["cores"]}, "commit": prov.get("commit"),
        "embeddings": embeddings,
    }
    out = Path(args.out)
    (out.parent / "results").mkdir(parents=True, exist_ok=True)
    (out.parent / "results" / "serving.json").write_text(json.dumps(figures, indent=1) + "\n")
    out.write_text(render(figures))
    print(json.dumps(figures, indent=1))
    return 0


INFINITY_VENV = Path(os.environ.get("RANKBENCH_INFINITY_VENV", Path.home() / ".cache" / "rankbench" / "infinity-venv"))
INFINITY_REQUIREMENTS = ROOT / "scripts" / "infinity-requirements.txt"


def infinity_python() -> Path:
    """infinity-emb in its own environment (it pins sentence-transformers 3 and transformers 4),
    built on first use: torch's CPU wheel first, then the pinned requirements."""
    import subprocess

    py = INFINITY_VENV / "bin" / "python"
    if not (INFINITY_VENV / "bin" / "infinity_emb").exists():
        subprocess.run([sys.executable, "-m", "venv", str(INFINITY_VENV)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", "torch==2.13.0"], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", "-r", str(INFINITY_REQUIREMENTS)], check=True)
    return INFINITY_VENV / "bin" / "infinity_emb"


def embed_load(url: str, path: str, model: str | None, bodies, clients: int, seconds: float) -> dict:
    """``clients`` clients each embedding a query's 100 passages per request, for ``seconds``."""
    import httpx

    latencies, codes = [], {}

    async def client(i, stop, http):
        n = 0
        while time.perf_counter() < stop:
            texts = bodies[(i + n * clients) % len(bodies)]["documents"]
            t0 = time.perf_counter()
            try:
                r = await http.post(f"{url}{path}", json={"input": texts, **({"model": model} if model else {})})
                codes[r.status_code] = codes.get(r.status_code, 0) + 1
                if r.status_code == 200:
                    assert len(r.json()["data"]) == len(texts)
                    latencies.append((time.perf_counter() - t0) * 1000)
            except httpx.HTTPError as e:
                codes[type(e).__name__] = codes.get(type(e).__name__, 0) + 1
            n += 1

    async def load():
        limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
        async with httpx.AsyncClient(timeout=300, limits=limits) as http:
            await http.post(f"{url}{path}", json={"input": ["warm-up"], **({"model": model} if model else {})})
            t0 = time.perf_counter()
            await asyncio.gather(*(client(i, t0 + seconds, http) for i in range(clients)))
            return time.perf_counter() - t0

    wall = asyncio.run(load())
    texts = len(latencies) * len(bodies[0]["documents"])
    return {"requests_ok": len(latencies), "errors": {str(k): v for k, v in codes.items() if k != 200},
            "seconds": round(wall, 1), "texts_per_s": round(texts / wall, 1),
            "p50_ms": round(percentile(latencies, 50), 1) if latencies else None,
            "p95_ms": round(percentile(latencies, 95), 1) if latencies else None}


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(url: str, proc) -> None:
    import httpx

    for _ in range(1500):
        try:
            if httpx.get(f"{url}/health").status_code == 200:
                return
        except httpx.TransportError:
            pass
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited: {proc.stderr.read()[-2000:]}")
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up")


def embed_side_by_side(args, config, bodies) -> dict:
    """rankbench's /v1/embeddings and infinity's /embeddings, the same model (all-MiniLM-L6-v2,
    torch, CPU), the same load, one after the other on the same machine."""
    import subprocess

    from rankers._models import resolve_model

    out = {"model": config.ranker(args.embed_ranker).params.model, "ranker": args.embed_ranker, "clients": args.clients,
           "texts_per_request": len(bodies[0]["documents"])}
    # rankbench serve as a user runs it: its own process, like infinity's
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "serve", args.embed_ranker, "--port", str(port),
                             "--encode-batch-size", "32", "--timeout-s", "600"],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        _wait(url, proc)
        out["rankbench"] = embed_load(url, "/v1/embeddings", None, bodies, args.clients, args.embed_seconds)
    finally:
        proc.terminate()
        proc.wait(30)
    if args.no_infinity:
        return out
    exe = infinity_python()
    port = _free_port()
    folder = resolve_model(out["model"]).path
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "INFINITY_ANONYMOUS_USAGE_STATS": "0", "DO_NOT_TRACK": "1"}
    proc = subprocess.Popen([str(exe), "v2", "--model-id", str(folder), "--served-model-name", "minilm",
                             "--engine", "torch", "--device", "cpu", "--host", "127.0.0.1", "--port", str(port),
                             "--batch-size", "32", "--no-bettertransformer"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        _wait(url, proc)
        out["infinity"] = embed_load(url, "/embeddings", "minilm", bodies, args.clients, args.embed_seconds)
        out["infinity"]["version"] = subprocess.run([str(exe.parent / "python"), "-c",
                                                     "import importlib.metadata as m; print(m.version('infinity_emb'))"],
                                                    capture_output=True, text=True).stdout.strip()
    finally:
        proc.terminate()
        proc.wait(30)
    out["rankbench_over_infinity"] = round(out["rankbench"]["texts_per_s"] / out["infinity"]["texts_per_s"], 3)
    return out


def render(f: dict) -> str:
    lat = f["latency_ms"] or {}
    errors = sum(f["errors"].values())
    return f"""# Serving under load

Generated by `.venv/bin/python scripts/serve_load.py` (measured in one run, on machine `{f['machine']['id']}`:
{f['machine']['cpu']}, {f['machine']['cores']} cores; commit `{(f['commit'] or 'no git')[:12]}`). The server is
`rankbench serve {f['ranker']}` (fingerprint `{f['fingerprint'][:16]}`) on 127.0.0.1; every request is a
{f['dataset']} `/rerank`: a judged query and the published BM25 run's top {f['depth']} passages. Each of
{f['clients']} clients sends its next request when its last is answered, for {f['seconds']:g} s; every query
text is new to the server (no cache hits under load).

| | figure |
|---|---:|
| clients | {f['clients']} |
| requests answered | {f['requests_ok']} |
| errors | {errors}{(' (' + ', '.join(f'{k}: {v}' for k, v in f['errors'].items()) + ')') if errors else ''} |
| latency p50 / p95 / p99 ms | {lat.get('p50', '—')} / {lat.get('p95', '—')} / {lat.get('p99', '—')} |
| requests/s | {f['requests_per_s']} |
| pairs/s under load | {f['pairs_per_s_under_load']} |
| pairs/s offline (the same pairs in one call, no HTTP) | {f['pairs_per_s_offline']} |
| under load / offline | {f['load_over_offline']:.2f}x |
| requests per batch (mean) | {f['mean_requests_per_batch']} |
| cache miss p50 ms (one at a time) | {f['cache']['miss_p50_ms']} |
| cache hit p50 ms (the same request again) | {f['cache']['hit_p50_ms']} |
| hit speed-up | {f['cache']['speedup']:g}x |

{_embeddings(f.get("embeddings"))}"""


def _embeddings(e: dict | None) -> str:
    if not e:
        return ""
    rows = [("rankbench `/v1/embeddings`", e["rankbench"])]
    if "infinity" in e:
        rows.append((f"infinity-emb {e['infinity'].get('version', '')} `/embeddings`", e["infinity"]))
    lines = "\n".join(f"| {name} | {r['requests_ok']} | {sum(r['errors'].values())}"
                      f"{(' (' + ', '.join(f'{k}: {v}' for k, v in r['errors'].items()) + ')') if r['errors'] else ''} | "
                      f"{r['p50_ms']} | {r['p95_ms']} | "
                      f"{r['texts_per_s']} |" for name, r in rows)
    ratio = (f"rankbench over infinity: {e['rankbench_over_infinity']:.2f}x the texts per second.\n"
             if "rankbench_over_infinity" in e else "")
    return f"""
## Embeddings beside infinity

The same model ({e['model']}, torch, CPU), the same load ({e['clients']} clients, each request a query's
{e['texts_per_request']} passages), one server after the other on this machine; infinity-emb runs in its
own environment (scripts/infinity-requirements.txt); both with batch size 32, each in its own process
(`rankbench serve {e.get('ranker', 'minilm')} --encode-batch-size 32 --timeout-s 600`: infinity has no deadline, so
neither sheds load here; with rankbench's default 30 s deadline the requests queued longer are answered 503), bound to
127.0.0.1, the load from this one.

| server | requests | errors | p50 ms | p95 ms | texts/s |
|---|---:|---:|---:|---:|---:|
{lines}

{ratio}"""


if __name__ == "__main__":
    sys.exit(main())
