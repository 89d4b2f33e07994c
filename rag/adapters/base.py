"""What every framework adapter stands on: a scorer for (query, texts), local or remote.

``scorer("ce-distilled-student-rerank-bm25")`` loads that bench.toml ranker's reranking stage
(its first stage is the framework's retriever, so it is not loaded); ``scorer("http://127.0.0.1:8000")``
calls a running ``rankbench serve`` (its ``/rerank``, with the same ranker behind it). Both
return the model's raw scores in the order of the texts; ``present`` maps them (a calibrator,
the sigmoid) where an adapter is asked to. Options resolve with ``is None``, never ``or``, so
0, 0.0 and False given at run time are honoured.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

from harness.errors import ConfigError, RankerUnavailable


def _config(config):
    """A loaded Config, or one read from a bench.toml path (default: $RANKBENCH_CONFIG or ./bench.toml)."""
    import os

    from harness.config import Config, load_config

    return config if isinstance(config, Config) else load_config(config or os.environ.get("RANKBENCH_CONFIG", "bench.toml"))


class LocalScorer:
    def __init__(self, ranker: str, config=None):
        """``config``: a bench.toml path (default: $RANKBENCH_CONFIG or ./bench.toml) or a loaded Config."""
        from harness.data import RequestCorpus
        from harness.runner import Runner

        cfg = _config(config)
        cfg.ranker(ranker)
        reports = cfg.root / "reports"
        self.name = ranker
        self.target = ranker
        self.runner = Runner(cfg, reports, progress=False, log=lambda m: None)
        self.pipe = self.runner.pipeline(ranker)
        if not self.pipe.ranker.reranks_texts or not all(m.ranker.reranks_texts for m in self.pipe.members.values()):
            raise RankerUnavailable(f"ranker {ranker} ({self.pipe.spec.kind}) cannot score texts it is given "
                                    f"(it knows only its datasets' documents): pick a reranker")
        self.corpus = RequestCorpus(name="adapter")
        self.pipe.prepare_to_rerank(self.corpus)

    def scores(self, query: str, texts: Sequence[str]) -> list[float]:
        from harness.types import Doc

        if not isinstance(query, str) or not query.strip():
            raise ConfigError(f"query: a non-empty string, found {query!r}")
        if not texts:
            return []
        ids = [f"t{i}" for i in range(len(texts))]
        with self.runner.rankers.lock:
            self.corpus.fill({i: Doc("", t) for i, t in zip(ids, texts)})
            run = self.pipe.rank_stage({"q": query}, {"q": {i: 0.0 for i in ids}}, len(ids))
        got = run.get("q", {})
        return [float(got[i]) for i in ids]


class RemoteScorer:
    def __init__(self, url: str, api_key: str | None = None, timeout_s: float = 60.0):
        import httpx

        self.url = url.rstrip("/")
        self.target = self.url
        self.headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
        self.client = httpx.Client(timeout=timeout_s, headers=self.headers)
        try:
            info = self.client.get(f"{self.url}/info")
        except httpx.HTTPError as e:
            raise RankerUnavailable(f"rankbench serve at {self.url} does not answer: {e}") from None
        if info.status_code != 200:
            raise RankerUnavailable(f"rankbench serve at {self.url}: /info answered {info.status_code} "
                                    f"({info.text[:200]})")
        self.info = info.json()
        self.name = self.info["ranker"]

    def _post(self, path: str, body: dict) -> dict:
        r = self.client.post(f"{self.url}{path}", json=body)
        if r.status_code != 200:
            raise RankerUnavailable(f"rankbench serve at {self.url}{path} answered {r.status_code}: {r.text[:300]}")
        return r.json()

    def scores(self, query: str, texts: Sequence[str]) -> list[float]:
        if not texts:
            return []
        got = self._post("/rerank", {"query": query, "documents": list(texts), "raw_scores": True})
        out = [None] * len(texts)
        for r in got["results"]:
            out[r["index"]] = float(r["relevance_score"])
        if any(s is None for s in out):
            raise RankerUnavailable(f"rankbench serve at {self.url} left some documents unscored (a threshold?)")
        return out

    def search(self, query: str, k: int, dataset: str | None = None):
        return self._post("/search", {"query": query, "k": k})["results"]


def scorer(target: str, config=None, api_key: str | None = None):
    """A bench.toml ranker name (local) or the URL of a running rankbench serve (remote)."""
    if not isinstance(target, str) or not target:
        raise ConfigError(f"target: a bench.toml ranker name or a rankbench serve URL, found {target!r}")
    if target.startswith(("http://", "https://")):
        return RemoteScorer(target, api_key)
    return LocalScorer(target, config)


class LocalSearch:
    """A bench.toml chain (first stage, then reranker) searching a dataset's corpus; a bi-encoder
    reranker reads the encoded corpus, as the server does."""

    def __init__(self, ranker: str, config=None):
        from harness.runner import Runner

        config = _config(config)
        config.ranker(ranker)
        self.name = ranker
        self.runner = Runner(config, config.root / "reports", progress=False, log=lambda m: None)

    def search(self, query: str, k: int, dataset: str | None):
        if not dataset:
            raise ConfigError(f"searching with the local ranker {self.name} needs a dataset (whose corpus is searched)")
        pipe = self.runner.pipeline(self.name)
        if pipe.dataset is None or pipe.dataset.name != dataset:
            pipe.prepare(self.runner.dataset(dataset))
            pipe.rerank_from_index()
        return [{"doc_id": h.doc_id, "text": h.text, "title": h.title, "score": h.score, "rank": h.rank,
                 "first_stage_score": h.first_stage_score} for h in pipe.search(query, k).hits]


def searcher(target: str, config=None, api_key: str | None = None):
    """A bench.toml chain (local, over a dataset) or a running rankbench serve's /search."""
    if not isinstance(target, str) or not target:
        raise ConfigError(f"target: a bench.toml ranker name or a rankbench serve URL, found {target!r}")
    if target.startswith(("http://", "https://")):
        return RemoteScorer(target, api_key)
    return LocalSearch(target, config)


@dataclass(frozen=True)
class Scored:
    index: int
    score: float           # as presented (mapped, when a mapping is set)
    raw: float


def rerank(score: Callable[[str, Sequence[str]], list[float]], query: str, texts: Sequence[str], *,
           top_n: int | None = None, threshold: float | None = None,
           present: Callable[[float], float] | None = None) -> list[Scored]:
    """Score, order (by the model's score, ties by position), threshold (on the presented score),
    cut to top_n. ``top_n=0`` keeps nothing and ``threshold=0.0`` is a threshold."""
    if top_n is not None and (isinstance(top_n, bool) or not isinstance(top_n, int) or top_n < 0):
        raise ConfigError(f"top_n: a whole number >= 0 or None, found {top_n!r}")
    raw = score(query, list(texts))
    shown = [present(s) if present is not None else s for s in raw]
    order = sorted(range(len(raw)), key=lambda i: (-raw[i], i))
    if threshold is not None:
        order = [i for i in order if shown[i] >= threshold]
    if top_n is not None:
        order = order[:top_n]
    return [Scored(i, float(shown[i]), float(raw[i])) for i in order]


def sigmoid(x: float) -> float:
    import math

    return 1 / (1 + math.exp(-x)) if x >= -700 else 0.0
