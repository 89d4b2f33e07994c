"""What the server does, without HTTP: rerank given documents, search the served corpus, embed
texts, with the ranker of bench.toml that the reports measured.

Two RankerSets (through two Runners) share the loaded models (the loaders are cached by path):
one prepared on the served dataset or corpus for ``/search``, one prepared to rerank an
in-memory corpus that each batch of requests fills (``RequestCorpus``). All ranking runs on one
worker thread (the batcher's), so the rankers, which are not thread-safe, never run twice at once.
"""
from __future__ import annotations

import hashlib
import math
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Sequence

from harness.config import Config
from harness.data import Corpus, RequestCorpus
from harness.errors import RankbenchError, RankerUnavailable
from harness.runner import Runner
from harness.types import Doc


class ServeError(RankbenchError):
    """A request the ranker cannot serve: answered with ``status`` and a message naming the field."""

    def __init__(self, message: str, status: int = 422, field: str | None = None):
        super().__init__(message)
        self.status, self.field = status, field


@dataclass(frozen=True)
class ServeSettings:
    max_documents: int = 10_000          # per /rerank request; more is a 422
    batch_documents: int = 1_000         # the batch cap: the server splits a bigger request (never the client)
    max_batch_tokens: int = 32_768       # a batch's token budget (estimated: 4 characters a token, capped at the model's length)
    max_wait_ms: float = 2.0             # how long the first request of a batch waits for company
    max_queue: int = 512                 # queued batch items; beyond it 429 with Retry-After
    timeout_s: float = 30.0              # a request's deadline, queueing included
    cache_entries: int = 1024            # the LRU result cache (0: none)
    score_mode: Literal["raw", "sigmoid", "calibrated"] = "raw"
    threshold: float | None = None       # results scoring below it are dropped (after score_mode)
    calibrator: Literal["identity", "temperature", "platt", "isotonic"] = "platt"   # for score_mode calibrated
    calibrate_on: str | None = None      # the dataset of bench.toml (a training or dev split) it is fitted on
    calibration_queries: int = 150       # judged queries sampled from it (seeded; 0: all)
    max_body_bytes: int = 4_000_000
    indexed_rerank: bool = True          # a bi-encoder reranking /search candidates reads the encoded corpus
    encode_batch_size: int | None = None  # the model's batch size while serving (an operational setting: the fingerprint is the same)


@dataclass
class RerankItem:
    query: str
    texts: list[str]

    def tokens(self) -> int:
        return sum(min(512, (len(self.query) + len(t)) // 4 + 3) for t in self.texts)


@dataclass
class Scored:
    scores: list[float]
    truncated: list[bool] | None          # None: this ranker's tokenizer is not at hand (a fusion)
    stats: dict = field(default_factory=dict)


class LRU:
    def __init__(self, size: int):
        self.size, self.data = size, OrderedDict()
        self.hits = self.misses = 0

    def get(self, key):
        if key in self.data:
            self.data.move_to_end(key)
            self.hits += 1
            return self.data[key]
        self.misses += 1
        return None

    def put(self, key, value) -> None:
        if self.size <= 0:
            return
        self.data[key] = value
        self.data.move_to_end(key)
        while len(self.data) > self.size:
            self.data.popitem(last=False)


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


class RankService:
    def __init__(self, config: Config, ranker: str, dataset: str | None = None, corpus: Corpus | None = None,
                 reports: Path | None = None, cache=None, settings: ServeSettings = ServeSettings(), log=None):
        self.settings = settings
        self.name = ranker
        self.config = config
        reports = reports or config.root / "reports"
        spec = config.ranker(ranker)
        self.spec = spec
        # /search: the whole chain over the served corpus
        self._search_runner = Runner(config, reports, cache=cache, progress=False, log=log)
        self.search_pipe = self._search_runner.pipeline(ranker)
        self.corpus = None
        self.indexed = False
        if dataset is not None or corpus is not None:
            self.corpus = self._search_runner.dataset(dataset) if dataset is not None else corpus
            self.search_pipe.prepare(self.corpus)
            self.indexed = settings.indexed_rerank and self.search_pipe.rerank_from_index()
        self.dataset_name = dataset
        self.calibrator = None
        if settings.score_mode == "calibrated":
            if not settings.calibrate_on:
                raise ServeError("score_mode calibrated needs calibrate_on: a dataset of bench.toml with judged "
                                 "queries (a training or dev split) to fit the calibrator on", status=500)
            from rag.calibrate import calibrator_for

            self.calibrator = calibrator_for(self._search_runner, ranker, settings.calibrator,
                                             settings.calibrate_on, settings.calibration_queries)
        # /rerank: the chain's final ranker over the request's documents
        self._rerank_runner = Runner(config, reports, cache=cache, progress=False, log=log)
        self.rerank_pipe = self._rerank_runner.pipeline(ranker)
        self.reranks = self.rerank_pipe.ranker.reranks_texts and all(
            m.ranker.reranks_texts for m in self.rerank_pipe.members.values())
        self.request_corpus = RequestCorpus(name="request")
        if self.reranks:
            self.rerank_pipe.prepare_to_rerank(self.request_corpus)
        # what the result cache keys on, and /info shows: the reranking stage (with a fusion's members'
        # own stages) for /rerank, the whole chain over the served corpus for /search
        self.fingerprint = self._stage_fingerprint(self.rerank_pipe)
        self.search_fingerprint = (self._search_runner.chain_fingerprint(ranker, self.corpus)
                                   if self.corpus is not None else None)
        if settings.encode_batch_size:
            _set_batch_size(self.rerank_pipe.ranker, settings.encode_batch_size)
            _set_batch_size(self.search_pipe.ranker, settings.encode_batch_size)
        self.cache = LRU(settings.cache_entries)
        self._tok = _tokenizer_of(self.rerank_pipe.ranker) if self.reranks else None
        self.encoder = _encoder_of(self.rerank_pipe.ranker)

    def _stage_fingerprint(self, pipe) -> str:
        from harness.cache import fingerprint
        from rankers.base import Ranker

        r = pipe.ranker
        if pipe.members:
            inputs = Ranker.fingerprint_inputs(r, self.request_corpus)
            inputs["members"] = {m: self._stage_fingerprint(p) for m, p in pipe.members.items()}
        else:
            inputs = r.fingerprint_inputs(self.request_corpus)
        return fingerprint({"rerank stage": inputs})

    # -- reranking (the worker thread) -------------------------------------------------------------

    def rerank_batch(self, items: Sequence[RerankItem], max_tokens: Sequence[int | None]) -> list[Scored]:
        """Score every item's documents in one call of the ranker (a pair scorer batches all pairs
        of all items together)."""
        texts = [[_cut(self._tok, t, n) for t in it.texts] for it, n in zip(items, max_tokens)]
        docs, queries, cands = {}, {}, {}
        for i, (it, ts) in enumerate(zip(items, texts)):
            qid = f"q{i}"
            queries[qid] = it.query
            cands[qid] = {}
            for j, t in enumerate(ts):
                docs[f"{i}.{j}"] = Doc("", t)
                cands[qid][f"{i}.{j}"] = 0.0
        self.request_corpus.fill(docs)
        depth = max((len(ts) for ts in texts), default=1)
        run = self.rerank_pipe.rank_stage(queries, cands, depth)
        out = []
        for i, (it, ts) in enumerate(zip(items, texts)):
            got = run.get(f"q{i}", {})
            missing = [j for j in range(len(ts)) if f"{i}.{j}" not in got]
            if missing:
                raise RankbenchError(f"ranker {self.name} left {len(missing)} of {len(ts)} documents unscored")
            out.append(Scored([got[f"{i}.{j}"] for j in range(len(ts))], self._truncated(it.query, ts)))
        return out

    def _truncated(self, query: str, texts: list[str]) -> list[bool] | None:
        if self._tok is None or not texts:
            return None if self._tok is None else []
        tok, max_len, pair = self._tok
        enc = tok([query] * len(texts), texts, truncation=False) if pair else tok(texts, truncation=False)
        return [len(ids) > max_len for ids in enc["input_ids"]]

    def too_long(self, query: str, texts: list[str], max_tokens: int | None) -> list[int]:
        """Indices of documents over the model's length (after max_tokens_per_doc)."""
        flags = self._truncated(query, [_cut(self._tok, t, max_tokens) for t in texts])
        return [i for i, f in enumerate(flags or []) if f]

    # -- search and embeddings (the worker thread) -------------------------------------------------

    def search(self, query: str, k: int):
        if self.corpus is None:
            raise ServeError(f"ranker {self.name} is served without a corpus: start it with --dataset or "
                             f"--corpus to search", status=404)
        try:
            return self.search_pipe.search(query, k)
        except RankerUnavailable as e:
            raise ServeError(str(e), status=422, field="query") from None

    def embed(self, texts: list[str]):
        if self.encoder is None:
            raise ServeError(f"ranker {self.name} ({self.spec.kind}) is not a bi-encoder: it has no embeddings",
                             status=404)
        return self.encoder(texts)

    # -- scores ------------------------------------------------------------------------------------

    def present(self, raw: float, raw_scores: bool | None) -> float:
        mode = "raw" if raw_scores else self.settings.score_mode
        if mode == "sigmoid":
            return 1.0 / (1.0 + math.exp(-raw)) if raw >= -700 else 0.0
        if mode == "calibrated":
            return self.calibrator(raw)
        return raw

    def info(self) -> dict:
        from harness.provenance import provenance

        pipe = self.search_pipe
        prov = provenance(self.config.root)
        models = {}
        for s in self.config.closure(self.name):
            model = getattr(s.params, "model", None) or getattr(s.params, "source", None)
            if model:
                inst = self._search_runner.instance(s.name)
                try:
                    models[s.name] = {"model": model, **inst.model_identity()}
                except RankbenchError as e:
                    models[s.name] = {"model": model, "identity": f"unavailable: {e}"}
        return {"ranker": self.name, "kind": self.spec.kind, "description": self.spec.description,
                "chain": list(reversed(pipe.stage_names())), "members": list(pipe.members),
                "fingerprint": self.fingerprint, "search_fingerprint": self.search_fingerprint,
                "search_reranks_from_index": self.indexed,
                "dataset": self.dataset_name,
                "corpus_documents": len(self.corpus.corpus()) if self.corpus is not None else None,
                "models": models, "endpoints": {"rerank": self.reranks, "search": self.corpus is not None,
                                                "embed": self.encoder is not None},
                "limits": {k: getattr(self.settings, k) for k in ("max_documents", "batch_documents",
                                                                   "max_batch_tokens", "max_wait_ms", "max_queue",
                                                                   "timeout_s", "max_body_bytes", "cache_entries")},
                "scores": {"mode": self.settings.score_mode, "threshold": self.settings.threshold,
                           "calibrator": None if self.calibrator is None else {
                               "method": self.calibrator.method, "fit_on": self.calibrator.fit_on,
                               "pairs": self.calibrator.n, "relevant": self.calibrator.positives,
                               "params": self.calibrator.params if self.calibrator.method != "isotonic"
                               else {"steps": len(self.calibrator.params["x"])},
                               "notes": list(self.calibrator.notes)}},
                "measured": measured(self.config, self.name, self._search_runner.reports),
                "commit": prov.get("commit"), "packages": prov.get("packages")}


def measured(config: Config, ranker: str, reports: Path) -> list[dict]:
    """This ranker's measured figures in the committed results: each suite and dataset, its first
    measure and its median latency."""
    from harness.results import read_result, result_path

    out = []
    for suite in config.suites.values():
        if ranker not in suite.rankers:
            continue
        for d in suite.datasets:
            path = result_path(reports, suite.name, ranker, d)
            if not path.exists():
                continue
            try:
                r = read_result(path)
            except RankbenchError:
                continue
            if r.get("status") != "ok":
                continue
            agg = r["measures"]["aggregate"]
            lat = (r.get("efficiency") or {}).get("latency_ms") or {}
            out.append({"suite": suite.name, "dataset": d, "measures": agg, "latency_p50_ms": lat.get("p50"),
                        "fingerprint": r["fingerprints"]["cell"][:16], "command": r.get("command")})
    return out


def _tokenizer_of(ranker):
    """(tokenizer, max_length, pairs?) of a ranker whose tokenizer is at hand, else None."""
    from rankers.biencoder import BiEncoder
    from rankers.crossencoder import CrossEncoderRanker

    inner = getattr(ranker, "inner", ranker)        # an onnx ranker delegates to its torch-class twin
    outer = getattr(inner, "outer", None)
    if isinstance(inner, CrossEncoderRanker):
        tok = outer.tokenizer() if outer is not None else inner.model.tokenizer
        return tok, inner.max_length, True
    if isinstance(inner, BiEncoder):
        if outer is not None:
            return outer.tokenizer(), outer.max_length(), False
        return inner.model.tokenizer, int(inner.model.max_seq_length), False
    return None


def _set_batch_size(ranker, n: int) -> None:
    import dataclasses

    for r in (ranker, getattr(ranker, "inner", None)):
        if r is not None and "batch_size" in type(r).OPERATIONAL:
            r.params = dataclasses.replace(r.params, batch_size=n)


def _encoder_of(ranker):
    """texts -> embeddings (a float32 array) for bi-encoders (torch or ONNX), else None."""
    from rankers.biencoder import BiEncoder

    inner = getattr(ranker, "inner", ranker)
    if not isinstance(inner, BiEncoder):
        return None
    return lambda texts: inner._encode(list(texts), progress=False)


def _cut(tok, text: str, max_tokens: int | None) -> str:
    """The document cut to ``max_tokens`` tokens (Cohere's max_tokens_per_doc): by the model's
    tokenizer, or by words when it is not at hand."""
    if max_tokens is None:
        return text
    if tok is None:
        words = text.split()
        return text if len(words) <= max_tokens else " ".join(words[:max_tokens])
    enc = tok[0](text, add_special_tokens=False, return_offsets_mapping=True, truncation=False)
    offsets = enc["offset_mapping"]
    return text if len(offsets) <= max_tokens else text[:offsets[max_tokens - 1][1]]
