"""The HTTP surface: FastAPI routes over a RankService and its Batcher.

Every response carries ``x-request-id`` and timing headers (``x-queue-time-ms``,
``x-inference-time-ms``, ``x-total-time-ms``); every error is JSON,
``{"error": {"type", "message", "field"}, "request_id"}``, and the server goes on serving.
"""
from __future__ import annotations

import asyncio
import hmac
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from .batcher import Batcher, DeadlineExceeded, QueueFull
from .schemas import EmbedRequest, OpenAIEmbeddingsRequest, RerankRequest, SearchRequest
from .service import RankService, RerankItem, ServeError, text_hash

OPEN = ("/health",)      # needs no API key


def _error(status: int, kind: str, message: str, request_id: str, field: str | None = None,
           headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": {"type": kind, "message": message, "field": field}, "request_id": request_id},
                        status_code=status, headers=headers)


class Metrics:
    def __init__(self):
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("rankbench_requests", "Requests by endpoint and status", ["endpoint", "status"], registry=r)
        self.latency = Histogram("rankbench_request_seconds", "Request latency", ["endpoint"], registry=r,
                                 buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30))
        self.queue = Gauge("rankbench_queue_depth", "Batch items waiting", registry=r)
        self.batch_items = Histogram("rankbench_batch_items", "Requests (or parts) per batch", registry=r,
                                     buckets=(1, 2, 4, 8, 16, 32, 64, 128))
        self.batch_tokens = Histogram("rankbench_batch_tokens", "Estimated tokens per batch", registry=r,
                                      buckets=(256, 1024, 4096, 8192, 16384, 32768, 65536))
        self.batch_pairs = Counter("rankbench_pairs", "Documents scored", registry=r)
        self.cache = Counter("rankbench_cache", "Result cache lookups", ["result"], registry=r)


def create_app(service: RankService, api_key: str | None = None, cors_origins: list[str] | None = None) -> FastAPI:
    settings = service.settings
    metrics = Metrics()
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rankbench-worker")
    state: dict = {}

    def run_batch(payloads):
        items = [p[0] for p in payloads]
        out = service.rerank_batch(items, [p[1] for p in payloads])
        metrics.batch_pairs.inc(sum(len(i.texts) for i in items))
        return out

    def embed_batch(payloads):
        """Every request's texts in one encode call: the model sorts them by length across requests,
        so a batch pads less than one request's texts alone would."""
        import numpy as np

        texts = [t for p in payloads for t in p]
        emb = service.embed(texts)
        out, at = [], 0
        for p in payloads:
            out.append(np.asarray(emb[at:at + len(p)]))
            at += len(p)
        return out

    async def lifespan(app):
        observe = lambda n, cost: (metrics.batch_items.observe(n), metrics.batch_tokens.observe(cost))  # noqa: E731
        batcher = Batcher(run_batch, settings.max_batch_tokens, settings.max_wait_ms / 1000, settings.max_queue,
                          executor, on_batch=observe)
        embedder = Batcher(embed_batch, settings.max_batch_tokens, settings.max_wait_ms / 1000, settings.max_queue,
                           executor, on_batch=observe)
        batcher.start()
        embedder.start()
        state["batcher"], state["embedder"] = batcher, embedder
        yield
        await batcher.stop()
        await embedder.stop()
        executor.shutdown(wait=True)

    app = FastAPI(title=f"rankbench serve {service.name}", version="1", lifespan=lifespan,
                  description=f"Ranker `{service.name}` ({service.spec.kind}) of bench.toml, fingerprint "
                              f"{service.fingerprint[:16]}.")
    if cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=cors_origins, allow_methods=["GET", "POST"],
                           allow_headers=["authorization", "content-type"])

    @app.middleware("http")
    async def envelope(request: Request, call_next):
        rid = request.headers.get("x-request-id") or uuid.uuid4().hex
        rid = rid if len(rid) <= 128 and rid.isprintable() else uuid.uuid4().hex
        request.state.rid, request.state.timing = rid, {}
        t0 = time.perf_counter()
        path = request.url.path
        if api_key is not None and path not in OPEN:
            given = request.headers.get("authorization", "")
            token = given[7:] if given.lower().startswith("bearer ") else ""
            if not hmac.compare_digest(token.encode(), api_key.encode()):
                response = _error(401, "unauthorized", "a valid API key is required (Authorization: Bearer ...)",
                                  rid, headers={"www-authenticate": "Bearer"})
                return _finish(response, request, path, t0)
        if request.method == "POST":
            length = request.headers.get("content-length")
            if length is None:
                return _finish(_error(411, "length_required", "send a Content-Length header", rid), request, path, t0)
            if not length.isdigit() or int(length) > settings.max_body_bytes:
                return _finish(_error(413, "body_too_large", f"the body is over {settings.max_body_bytes} bytes",
                                      rid), request, path, t0)
        try:
            response = await call_next(request)
        except Exception as e:          # a bug answers 500 with the request id; the server keeps serving
            response = _error(500, "server_error", f"{type(e).__name__}: {e}", rid)
        return _finish(response, request, path, t0)

    def _finish(response, request: Request, path: str, t0: float):
        total = (time.perf_counter() - t0) * 1000
        response.headers["x-request-id"] = request.state.rid
        response.headers["x-total-time-ms"] = f"{total:.3f}"
        for k, v in request.state.timing.items():
            response.headers[f"x-{k}-time-ms"] = f"{v:.3f}"
        known = path if path in KNOWN else "other"
        metrics.requests.labels(known, str(response.status_code)).inc()
        metrics.latency.labels(known).observe(total / 1000)
        return response

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        errs = exc.errors()
        first = errs[0] if errs else {}
        if first.get("type") == "json_invalid":
            return _error(400, "malformed_json", f"the body is not valid JSON: {first.get('msg', '')}",
                          request.state.rid)
        loc = [str(x) for x in first.get("loc", ()) if x != "body"]
        # pydantic names the union member it tried ("str", "DocumentIn"): the field is what the user wrote
        loc = [x for x in loc if x not in ("str", "DocumentIn", "list[str]", "function-after[...]")]
        field = ".".join(loc) or None
        kind = "unknown_field" if first.get("type") == "extra_forbidden" else "invalid_field"
        message = f"{field}: {first.get('msg')}" if field else str(first.get("msg", "invalid body"))
        return _error(422, kind, message, request.state.rid, field)

    @app.exception_handler(ServeError)
    async def serve_error(request: Request, exc: ServeError):
        return _error(exc.status, "invalid_request" if exc.status < 500 else "server_error", str(exc),
                      request.state.rid, exc.field)

    async def _queued(payload, cost: int, request: Request, queue: str = "batcher"):
        batcher: Batcher = state[queue]
        metrics.queue.set(batcher.depth)
        try:
            result, timing = await batcher.submit(payload, cost, time.perf_counter() + settings.timeout_s)
        except QueueFull:
            raise _Refused(429, "overloaded", "the queue is full: retry shortly", {"retry-after": "1"})
        except DeadlineExceeded:
            raise _Refused(503, "deadline_exceeded", f"not started within {settings.timeout_s:g} s",
                           {"retry-after": "1"})
        t = request.state.timing
        t["queue"] = max(t.get("queue", 0.0), timing.queue_ms)
        t["inference"] = t.get("inference", 0.0) + timing.inference_ms
        return result

    @app.post("/rerank")
    async def rerank(body: RerankRequest, request: Request):
        rid = request.state.rid
        if not service.reranks:
            raise ServeError(f"ranker {service.name} ({service.spec.kind}) cannot rerank given documents (it needs "
                             f"a corpus index or judgments): serve a cross-encoder, bi-encoder, ONNX or fusion "
                             f"ranker for /rerank", 404)
        if body.model is not None and body.model != service.name:
            raise ServeError(f"model: {body.model!r} is not served here; this server serves {service.name!r}",
                             422, "model")
        if not body.query.strip():
            raise ServeError("query: must not be empty", 422, "query")
        if (body.documents is None) == (body.texts is None):
            raise ServeError("documents: give documents (Cohere) or texts (TEI), not both and not neither", 422, "documents")
        docs = body.documents if body.documents is not None else body.texts
        field = "documents" if body.documents is not None else "texts"
        if not docs:
            raise ServeError(f"{field}: no documents to rerank", 422, field)
        if len(docs) > settings.max_documents:
            raise ServeError(f"{field}: {len(docs)} documents, more than this server's limit of "
                             f"{settings.max_documents}", 422, field)
        texts = [d if isinstance(d, str) else d.text for d in docs]
        ids = [None if isinstance(d, str) else d.id for d in docs]
        if not body.truncate:
            long = await asyncio.get_running_loop().run_in_executor(
                executor, service.too_long, body.query, texts, body.max_tokens_per_doc)
            if long:
                raise ServeError(f"{field}.{long[0]}: longer than the model's length ({len(long)} documents are); "
                                 f"send truncate = true to score them truncated", 422, f"{field}.{long[0]}")
        key = (service.fingerprint, body.query, tuple(text_hash(t) for t in texts), body.max_tokens_per_doc)
        scored = service.cache.get(key) if settings.cache_entries else None
        metrics.cache.labels("hit" if scored is not None else "miss").inc()
        if scored is None:
            step = len(texts) if service.spec.kind == "fusion" else settings.batch_documents   # fusion normalises per query
            parts = [texts[i:i + step] for i in range(0, len(texts), step)]
            got = await asyncio.gather(*(_queued((RerankItem(body.query, p), body.max_tokens_per_doc),
                                                 RerankItem(body.query, p).tokens(), request) for p in parts))
            scores = [s for g in got for s in g.scores]
            flags = None if any(g.truncated is None for g in got) else [f for g in got for f in g.truncated]
            scored = (scores, flags)
            service.cache.put(key, scored)
        scores, flags = scored
        shown = [service.present(s, body.raw_scores) for s in scores]
        # ordered by the model's own score (a mapping is monotone, but a saturated sigmoid ties)
        order = sorted(range(len(texts)), key=lambda i: (-scores[i], i))
        if settings.threshold is not None:
            order = [i for i in order if shown[i] >= settings.threshold]
        if body.top_n is not None:
            order = order[:body.top_n]
        with_docs = body.return_documents or bool(body.return_text)
        results = []
        for i in order:
            r = {"index": i, "relevance_score": shown[i], "truncated": None if flags is None else flags[i]}
            if with_docs:
                r["document"] = {"text": texts[i], **({"id": ids[i]} if ids[i] is not None else {})}
            results.append(r)
        return {"id": rid, "model": service.name, "results": results,
                "usage": {"documents": len(texts), "search_units": 1}}

    @app.post("/search")
    async def search(body: SearchRequest, request: Request):
        if not body.query.strip():
            raise ServeError("query: must not be empty", 422, "query")
        key = (service.search_fingerprint, "search", body.query, body.k)
        hit = service.cache.get(key) if settings.cache_entries else None
        metrics.cache.labels("hit" if hit is not None else "miss").inc()
        if hit is None:
            t0 = time.perf_counter()
            res = await asyncio.get_running_loop().run_in_executor(executor, service.search, body.query, body.k)
            request.state.timing["inference"] = (time.perf_counter() - t0) * 1000
            hit = {"query": body.query,
                   "results": [{"doc_id": h.doc_id, "text": h.text, "title": h.title, "score": h.score,
                                "rank": h.rank} for h in res.hits],
                   "timings_ms": dict(res.timings_ms)}
            service.cache.put(key, hit)
        if settings.score_mode == "raw" and settings.threshold is None:
            return hit
        # scores as score_mode says (the cached hit keeps the model's), the threshold after them
        results = [{**r, "score": service.present(r["score"], False), "raw_score": r["score"]} for r in hit["results"]]
        if settings.threshold is not None:
            results = [r for r in results if r["score"] >= settings.threshold]
        return {**hit, "results": results}

    async def _embed(texts: list[str], request: Request, field: str):
        if not texts or any(not isinstance(t, str) for t in texts):
            raise ServeError(f"{field}: give a text or a non-empty list of texts", 422, field)
        if len(texts) > settings.max_documents:
            raise ServeError(f"{field}: {len(texts)} texts, more than this server's limit of "
                             f"{settings.max_documents}", 422, field)
        if service.encoder is None:
            service.embed(texts)             # the 404 that says why
        step = settings.batch_documents
        parts = [texts[i:i + step] for i in range(0, len(texts), step)]
        got = await asyncio.gather(*(_queued(p, sum(min(512, len(t) // 4 + 2) for t in p), request, "embedder")
                                     for p in parts))
        import numpy as np

        return np.concatenate(got) if len(got) > 1 else got[0]

    @app.post("/embed")
    async def embed(body: EmbedRequest, request: Request):
        texts = [body.inputs] if isinstance(body.inputs, str) else body.inputs
        emb = await _embed(texts, request, "inputs")
        if body.normalize:
            import numpy as np

            emb = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
        return _json(emb)

    @app.post("/v1/embeddings")
    async def openai_embeddings(body: OpenAIEmbeddingsRequest, request: Request):
        if body.model is not None and body.model != service.name:
            raise ServeError(f"model: {body.model!r} is not served here; this server serves {service.name!r}",
                             422, "model")
        texts = [body.input] if isinstance(body.input, str) else body.input
        emb = await _embed(texts, request, "input")
        tokens = sum(max(1, len(t) // 4) for t in texts)
        return _json({"object": "list", "model": service.name,
                      "data": [{"object": "embedding", "index": i, "embedding": e} for i, e in enumerate(emb)],
                      "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})

    @app.get("/health")
    async def health():
        ready = "batcher" in state
        return JSONResponse({"status": "ok" if ready else "starting", "ranker": service.name},
                            status_code=200 if ready else 503)

    @app.get("/info")
    async def info():
        out = service.info()
        out["cache"] = {"entries": len(service.cache.data), "hits": service.cache.hits, "misses": service.cache.misses}
        return out

    @app.get("/metrics")
    async def prometheus():
        if "batcher" in state:
            metrics.queue.set(state["batcher"].depth)
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.exception_handler(_Refused)
    async def refused(request: Request, exc: _Refused):
        return _error(exc.status, exc.kind, exc.message, request.state.rid, headers=exc.headers)

    KNOWN = {"/rerank", "/search", "/embed", "/v1/embeddings", "/health", "/info", "/metrics", "/docs",
             "/openapi.json"}
    app.state.service, app.state.metrics = service, metrics
    return app


def _json(obj) -> Response:
    """Embeddings straight from numpy to JSON (orjson): FastAPI's encoder would walk every float."""
    import orjson

    return Response(orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY), media_type="application/json")


class _Refused(Exception):
    def __init__(self, status: int, kind: str, message: str, headers: dict):
        self.status, self.kind, self.message, self.headers = status, kind, message, headers

