"""rankbench serve on 127.0.0.1: every endpoint, a 50-client burst, every bad input (each gets
its 4xx and the server answers the next good request), the API key, batching, splitting, the
result cache, a full queue and SIGTERM. A real uvicorn server, real HTTP (httpx), the real toy
data (a Vaswani slice) and a real scorer: a user's own PairScorer, so the fast loop runs it."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
import uvicorn

from conftest import ROOT
from harness.cache import Cache
from harness.config import load_config, with_ranker
from rankers.base import PairScorer
from serving.app import create_app
from harness.errors import DataError
from serving.service import RankService, ServeError, ServeSettings

KEY = "test-key-123"
AUTH = {"authorization": f"Bearer {KEY}"}


class TermOverlap(PairScorer):
    """The share of the query's words a document contains."""

    kind = "term-overlap"
    delay = 0.0

    def score(self, pairs):
        if self.delay:
            time.sleep(self.delay)
        out = []
        for q, d in pairs:
            words = set(q.lower().split())
            out.append(len(words & set(d.lower().split())) / max(len(words), 1))
        return np.array(out)


class SlowOverlap(TermOverlap):
    delay = 0.2


class Server:
    """uvicorn in a thread on 127.0.0.1, an ephemeral port; stopped by the fixture."""

    def __init__(self, app):
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="error"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        for _ in range(500):
            if self.server.started:
                break
            time.sleep(0.01)
        assert self.server.started
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"

    def stop(self):
        self.server.should_exit = True
        self.thread.join(10)


def _config(toy):
    config = load_config(toy.config)
    config = with_ranker(config, "overlap", TermOverlap, {})
    config = with_ranker(config, "overlap-rerank-bm25s", TermOverlap, {"first_stage": "bm25s", "depth": 20})
    config = with_ranker(config, "slow", SlowOverlap, {})
    return with_ranker(config, "fusion", "fusion", {"members": {"overlap": 1.0, "random-first": 1.0},
                                                     "normalize": "rrf", "first_stage": "first", "depth": 20})


@pytest.fixture
def serve(toy, rankbench_home):
    servers = []

    def start(ranker="overlap-rerank-bm25s", dataset="toy", api_key=KEY, **settings):
        service = RankService(_config(toy), ranker, dataset=dataset, reports=toy.reports,
                              cache=Cache(rankbench_home), settings=ServeSettings(**settings), log=lambda m: None)
        server = Server(create_app(service, api_key=api_key))
        servers.append(server)
        return server.url, service

    yield start
    for s in servers:
        s.stop()


DOCS = ["the measurement of radio waves in the ionosphere", "electron density of the ionosphere",
        "a cooking recipe for bread", {"id": "x", "text": "radio propagation and the ionosphere layers"}]


def _rerank(url, **body):
    return httpx.post(f"{url}/rerank", json={"query": "radio waves ionosphere", "documents": DOCS, **body},
                      headers=AUTH, timeout=30)


def test_every_endpoint_answers(serve, toy):
    url, service = serve()
    assert httpx.get(f"{url}/health").json() == {"status": "ok", "ranker": "overlap-rerank-bm25s"}

    r = _rerank(url, top_n=3, return_documents=True)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "overlap-rerank-bm25s" and body["id"] == r.headers["x-request-id"]
    scores = [x["relevance_score"] for x in body["results"]]
    assert [x["index"] for x in body["results"]] == [0, 3, 1]      # 3/3 words, 2/3 (tie broken by index), 1/3
    assert scores == sorted(scores, reverse=True) and scores[0] == 1.0
    assert body["results"][1]["document"] == {"text": DOCS[3]["text"], "id": "x"}
    assert body["usage"]["documents"] == 4
    for h in ("x-queue-time-ms", "x-inference-time-ms", "x-total-time-ms"):
        assert float(r.headers[h]) >= 0
    # TEI's body gives the same order
    tei = httpx.post(f"{url}/rerank", json={"query": "radio waves ionosphere",
                                            "texts": [d if isinstance(d, str) else d["text"] for d in DOCS]},
                     headers=AUTH).json()
    assert [x["index"] for x in tei["results"]] == [0, 3, 1, 2]

    s = httpx.post(f"{url}/search", json={"query": "electron density of the ionosphere", "k": 3}, headers=AUTH)
    assert s.status_code == 200, s.text
    hits = s.json()["results"]
    corpus = service.corpus.corpus()
    assert 1 <= len(hits) <= 3 and [h["rank"] for h in hits] == list(range(1, len(hits) + 1))
    assert all(h["doc_id"] in corpus and h["text"] == corpus[h["doc_id"]].text for h in hits)
    assert set(s.json()["timings_ms"]) == {"bm25s", "overlap-rerank-bm25s"}

    e = httpx.post(f"{url}/embed", json={"inputs": "x"}, headers=AUTH)
    assert e.status_code == 404 and "not a bi-encoder" in e.json()["error"]["message"]

    info = httpx.get(f"{url}/info", headers=AUTH).json()
    assert info["ranker"] == "overlap-rerank-bm25s" and info["chain"] == ["bm25s", "overlap-rerank-bm25s"]
    assert info["fingerprint"] == service.fingerprint and len(info["fingerprint"]) == 64
    assert info["limits"]["max_documents"] == 10_000 and info["endpoints"]["rerank"] is True
    metrics = httpx.get(f"{url}/metrics", headers=AUTH).text
    assert 'rankbench_requests_total{endpoint="/rerank",status="200"} 2.0' in metrics
    assert "rankbench_batch_items_bucket" in metrics and "rankbench_queue_depth" in metrics
    assert httpx.get(f"{url}/docs", headers=AUTH).status_code == 200
    assert "/rerank" in httpx.get(f"{url}/openapi.json", headers=AUTH).json()["paths"]


BAD = [
    ("malformed JSON", b"{\"query\": ", 400, "malformed_json", None),
    ("wrong type", {"query": 3, "documents": ["a"]}, 422, "invalid_field", "query"),
    ("wrong document type", {"query": "q", "documents": ["a", 5]}, 422, "invalid_field", "documents.1"),
    ("unknown field", {"query": "q", "documents": ["a"], "top_k": 3}, 422, "unknown_field", "top_k"),
    ("empty query", {"query": "  ", "documents": ["a"]}, 422, "invalid_request", "query"),
    ("no documents", {"query": "q", "documents": []}, 422, "invalid_request", "documents"),
    ("documents and texts", {"query": "q", "documents": ["a"], "texts": ["b"]}, 422, "invalid_request", "documents"),
    ("too many documents", {"query": "q", "documents": ["a"] * 11}, 422, "invalid_request", "documents"),
    ("top_n of 0", {"query": "q", "documents": ["a"], "top_n": 0}, 422, "invalid_field", "top_n"),
    ("another model", {"query": "q", "documents": ["a"], "model": "rerank-v3.5"}, 422, "invalid_request", "model"),
    ("a body over the limit", {"query": "q", "documents": ["x" * 3000]}, 413, "body_too_large", None),
]


@pytest.fixture(scope="module")
def strict_server(toy_source, tmp_path_factory, rankbench_home):
    """One server for every bad input (each is followed by a good request to it)."""
    import shutil

    from conftest import TOY_CONFIG, ToyProject

    toy = ToyProject(tmp_path_factory.mktemp("strict") / "project")
    shutil.copytree(toy_source, toy.data)
    toy.config.write_text(TOY_CONFIG)
    toy.reports.mkdir()
    service = RankService(_config(toy), "overlap-rerank-bm25s", dataset="toy", reports=toy.reports,
                          cache=Cache(rankbench_home), settings=ServeSettings(max_documents=10, max_body_bytes=2000),
                          log=lambda m: None)
    server = Server(create_app(service, api_key=KEY))
    yield server.url
    server.stop()


@pytest.mark.parametrize("what, body, status, kind, field", BAD, ids=[b[0] for b in BAD])
def test_bad_input_gets_its_4xx_and_the_server_serves_on(strict_server, what, body, status, kind, field):
    url = strict_server
    content = body if isinstance(body, bytes) else None
    r = httpx.post(f"{url}/rerank", content=content, json=None if content else body,
                   headers={**AUTH, "content-type": "application/json"})
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["type"] == kind and err["field"] == field and r.json()["request_id"] == r.headers["x-request-id"]
    if field:
        assert err["message"].startswith(field)
    assert _rerank(url).status_code == 200          # and the next good request is answered


def test_the_api_key(serve):
    url, _ = serve()
    assert httpx.get(f"{url}/health").status_code == 200                # liveness needs no key
    for headers in ({}, {"authorization": "Bearer wrong"}, {"authorization": KEY}, {"authorization": "Basic " + KEY}):
        for method, path in (("post", "/rerank"), ("get", "/info"), ("get", "/metrics"), ("post", "/search")):
            r = getattr(httpx, method)(f"{url}{path}", headers=headers,
                                       **({"json": {"query": "q", "documents": ["a"]}} if method == "post" else {}))
            assert r.status_code == 401, (headers, path)
            assert "overlap" not in r.text and "fingerprint" not in r.text      # nothing about the model
    assert _rerank(url).status_code == 200


@pytest.mark.load
def test_a_50_client_burst_is_batched_and_all_answered(serve):
    url, service = serve(max_wait_ms=5.0)
    stop = time.perf_counter() + 2.0

    def client(i: int) -> list[int]:
        codes = []
        with httpx.Client(headers=AUTH, timeout=30) as c:
            # at least one request each, even from a client started after the 2 s (a loaded machine)
            while not codes or time.perf_counter() < stop:
                docs = [f"document {i} {j} about radio waves" if j % 2 else f"bread {j}" for j in range(20)]
                r = c.post(f"{url}/rerank", json={"query": f"radio waves {i} {len(codes)}", "documents": docs})
                codes.append(r.status_code)
                assert r.status_code != 200 or len(r.json()["results"]) == 20
        return codes

    with ThreadPoolExecutor(50) as pool:
        per_client = list(pool.map(client, range(50)))
    codes = [c for got in per_client for c in got]
    assert all(per_client) and set(codes) == {200}, {c: codes.count(c) for c in set(codes)}
    metrics = httpx.get(f"{url}/metrics", headers=AUTH).text
    count = float(next(l.split()[-1] for l in metrics.splitlines() if l.startswith("rankbench_batch_items_count")))
    assert count < len(codes)        # fewer batches than requests: concurrent requests shared batches
    assert _rerank(url).status_code == 200


def test_a_request_over_the_batch_cap_is_split_by_the_server(serve):
    url, _ = serve(batch_documents=3, cache_entries=0)
    docs = [f"radio {'waves ' * (i % 4)}text {i}" for i in range(10)]
    r = httpx.post(f"{url}/rerank", json={"query": "radio waves", "documents": docs}, headers=AUTH)
    assert r.status_code == 200
    got = {x["index"]: x["relevance_score"] for x in r.json()["results"]}
    assert sorted(got) == list(range(10))
    want = [len({"radio", "waves"} & set(d.split())) / 2 for d in docs]     # what the scorer gives each
    assert [got[i] for i in range(10)] == pytest.approx(want)
    metrics = httpx.get(f"{url}/metrics", headers=AUTH).text
    assert "rankbench_pairs_total 10.0" in metrics


def test_the_result_cache_answers_the_same_request_and_never_another_model(serve):
    url, service = serve()
    first = _rerank(url).json()["results"]
    again = _rerank(url)
    assert again.json()["results"] == first and "x-inference-time-ms" not in again.headers   # not scored again
    assert httpx.get(f"{url}/info", headers=AUTH).json()["cache"]["hits"] == 1
    url2, other = serve(ranker="fusion", dataset=None)
    assert other.fingerprint != service.fingerprint                  # the cache key starts with it
    assert _rerank(url2).json()["results"] != first


@pytest.mark.load
def test_a_full_queue_answers_429_with_retry_after(serve):
    url, _ = serve(ranker="slow", dataset=None, max_queue=1, max_wait_ms=0.0, cache_entries=0)
    with ThreadPoolExecutor(8) as pool:
        rs = list(pool.map(lambda i: httpx.post(f"{url}/rerank", json={"query": f"q {i}", "documents": ["a b"]},
                                                headers=AUTH, timeout=30), range(8)))
    codes = [r.status_code for r in rs]
    assert 429 in codes and 200 in codes, codes
    refused = next(r for r in rs if r.status_code == 429)
    assert refused.headers["retry-after"] == "1" and refused.json()["error"]["type"] == "overloaded"
    assert _rerank(url).status_code == 200


def test_scores_are_sigmoid_when_asked_and_below_the_threshold_dropped(serve):
    url, _ = serve(score_mode="sigmoid", threshold=0.55)
    results = _rerank(url).json()["results"]
    assert [x["index"] for x in results] == [0, 3, 1]       # sigmoid(1/3) = 0.58 kept; the bread recipe, sigmoid(0) = 0.5, dropped
    assert results[0]["relevance_score"] == pytest.approx(1 / (1 + np.exp(-1.0)))
    raw = _rerank(url, raw_scores=True).json()["results"]
    assert raw[0]["relevance_score"] == 1.0


def test_calibrated_scores_are_probabilities_fitted_on_judged_pairs(toy, scifact_sample, rankbench_home):
    """score_mode calibrated: a Platt calibrator fitted on a dataset's judged pairs before the
    port opens, named in /info; scores in (0, 1), the order the model's, the threshold after them;
    /search too. Too few judged pairs is a clear error at start, not a silent identity."""
    import dataclasses

    from harness.data import DatasetSpec

    config = _config(toy)
    config = dataclasses.replace(config, datasets={**config.datasets,
                                                   "sample": DatasetSpec("sample", f"local:{scifact_sample}")})
    service = RankService(config, "overlap-rerank-bm25s", dataset="toy", reports=toy.reports,
                          cache=Cache(rankbench_home), log=lambda m: None,
                          settings=ServeSettings(score_mode="calibrated", calibrate_on="sample"))
    cal = service.info()["scores"]["calibrator"]
    assert cal["method"] == "platt" and "sample" in cal["fit_on"] and cal["pairs"] >= 200 and cal["relevant"] >= 20
    assert cal["params"]["a"] > 0
    server = Server(create_app(service, api_key=KEY))
    try:
        got = _rerank(server.url).json()["results"]
        raw = _rerank(server.url, raw_scores=True).json()["results"]
        assert [x["index"] for x in got] == [x["index"] for x in raw] == [0, 3, 1, 2]
        assert all(0 < x["relevance_score"] < 1 for x in got)
        assert [x["relevance_score"] for x in got] == pytest.approx(
            [service.calibrator(x["relevance_score"]) for x in raw])
        hits = httpx.post(f"{server.url}/search", json={"query": "radio waves", "k": 5}, headers=AUTH).json()["results"]
        assert hits and all(h["score"] == pytest.approx(service.calibrator(h["raw_score"])) for h in hits)
    finally:
        server.stop()
    with pytest.raises(DataError, match="at least 200"):
        RankService(config, "overlap-rerank-bm25s", dataset="toy", reports=toy.reports, cache=Cache(rankbench_home),
                    log=lambda m: None, settings=ServeSettings(score_mode="calibrated", calibrate_on="toy"))
    with pytest.raises(ServeError, match="calibrate_on"):
        RankService(config, "overlap-rerank-bm25s", dataset="toy", reports=toy.reports, cache=Cache(rankbench_home),
                    log=lambda m: None, settings=ServeSettings(score_mode="calibrated"))


@pytest.mark.load
def test_sigterm_lets_the_request_in_flight_finish(toy):
    """rankbench serve as a user runs it: SIGTERM while a slow request is in flight; the request
    is answered, then the server exits."""
    plugin = toy.root / "slowplugin.py"
    plugin.write_text("import time\nimport numpy as np\nfrom rankers.base import PairScorer\n\n"
                      "class Slow(PairScorer):\n    def score(self, pairs):\n        time.sleep(1.5)\n"
                      "        return np.zeros(len(pairs))\n")
    toy.config.write_text(toy.config.read_text() + '\n[rankers.slow]\nkind = "slowplugin:Slow"\n')
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(toy.root), "RANKBENCH_HOME": str(toy.root / "home")}
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "serve", "slow", "--config", str(toy.config),
                             "--port", str(port)], cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                if httpx.get(f"{url}/health").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(httpx.post, f"{url}/rerank", json={"query": "q", "documents": ["a"]}, timeout=30)
            time.sleep(0.5)
            proc.send_signal(signal.SIGTERM)
            r = pending.result()
        assert r.status_code == 200 and r.json()["results"][0]["index"] == 0
        # uvicorn shuts down gracefully, then re-raises the signal: the exit says it was terminated
        assert proc.wait(30) in (0, -signal.SIGTERM)
        assert "Traceback" not in proc.stderr.read()
    finally:
        proc.kill()


@pytest.mark.models
def test_a_bi_encoder_embeds_and_says_what_it_truncated(scifact_sample, rankbench_home, tmp_path):
    """MiniLM (max_length 32, so real abstracts are cut): /embed and /v1/embeddings give the
    model's own vectors; /rerank flags the documents it truncated, cuts them to
    max_tokens_per_doc when asked, and refuses them with truncate = false."""
    from harness.config import parse_config

    config = parse_config({"datasets": {"sample": f"local:{scifact_sample}"},
                           "rankers": {"minilm": {"kind": "bi-encoder", "max_length": 32}}}, tmp_path / "bench.toml")
    service = RankService(config, "minilm", dataset="sample", cache=Cache(rankbench_home), log=lambda m: None)
    server = Server(create_app(service))
    try:
        url = server.url
        long, short = " ".join(["ionosphere radio waves"] * 30), "radio waves"
        e = httpx.post(f"{url}/embed", json={"inputs": [short, long]}).json()
        direct = service.embed([short, long])
        assert np.allclose(np.array(e), direct / np.linalg.norm(direct, axis=1, keepdims=True), atol=1e-5)
        o = httpx.post(f"{url}/v1/embeddings", json={"input": short, "model": "minilm"}).json()
        assert o["object"] == "list" and o["data"][0]["index"] == 0 and len(o["data"][0]["embedding"]) == 384
        r = httpx.post(f"{url}/rerank", json={"query": "radio", "documents": [short, long]}).json()["results"]
        assert {x["index"]: x["truncated"] for x in r} == {0: False, 1: True}
        cut = httpx.post(f"{url}/rerank", json={"query": "radio", "documents": [short, long],
                                               "max_tokens_per_doc": 8}).json()["results"]
        assert {x["index"]: x["truncated"] for x in cut} == {0: False, 1: False}
        bad = httpx.post(f"{url}/rerank", json={"query": "radio", "documents": [short, long], "truncate": False})
        assert bad.status_code == 422 and bad.json()["error"]["field"] == "documents.1"
        hits = httpx.post(f"{url}/search", json={"query": "radio waves in the ionosphere", "k": 3}).json()["results"]
        assert len(hits) == 3 and hits[0]["score"] >= hits[-1]["score"]
        assert httpx.post(f"{url}/rerank", json={"query": "radio", "documents": [short]}).status_code == 200
    finally:
        server.stop()


@pytest.mark.models
def test_a_bi_encoder_reranker_searches_from_the_encoded_corpus(scifact_sample, rankbench_home, tmp_path):
    """/search with a bi-encoder reranking BM25: the server encodes the corpus once and reranks
    from its rows (only the query is encoded per request), with the ranking of online encoding."""
    from harness.config import parse_config

    config = parse_config({"datasets": {"sample": f"local:{scifact_sample}"},
                           "rankers": {"bm25s": {"kind": "bm25", "backend": "bm25s"},
                                       "minilm-rerank": {"kind": "bi-encoder", "max_length": 128,
                                                         "first_stage": "bm25s", "depth": 30}}},
                          tmp_path / "bench.toml")
    got = {}
    for indexed in (True, False):
        service = RankService(config, "minilm-rerank", dataset="sample", cache=Cache(rankbench_home),
                              settings=ServeSettings(indexed_rerank=indexed, cache_entries=0), log=lambda m: None)
        assert service.indexed is indexed and service.info()["search_reranks_from_index"] is indexed
        server = Server(create_app(service))
        try:
            got[indexed] = [httpx.post(f"{server.url}/search", json={"query": q, "k": 10}).json()["results"]
                            for q in ("radio waves in the ionosphere", "vitamin D and bone density")]
        finally:
            server.stop()
    for a, b in zip(got[True], got[False]):
        assert [h["doc_id"] for h in a] == [h["doc_id"] for h in b]
        assert [h["score"] for h in a] == pytest.approx([h["score"] for h in b], abs=1e-4)
