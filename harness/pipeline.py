"""A configured ranker's whole chain, built once, that ranks queries nobody has seen.

``RankerSet`` holds a config's rankers, each built once and shared by every chain that uses it
(the BM25 under ten rerankers is one index): their instances, the datasets they are prepared for,
and their chain fingerprints. Fusion and ONNX rankers reach the rankers they are built on through
it (it implements ``rankers.base.Rankers``), never through the Runner.

``Pipeline`` is one ranker's chain resolved into objects: its own ranker, its first stage (a
Pipeline, cut to ``depth``), a fusion's members (Pipelines) and an ONNX model's source (the
ranker that lends its model). ``prepare(dataset)`` is the prepare phase: every model of the chain
is found, trained or exported (``Ranker.resolve_models``), then every stage builds what ranking
needs; training or exporting later, inside ``rank``, is a ``PrepareError``. ``rank(queries, k)``
ranks live through the whole chain, fusion members included; ``search(text, k)`` answers one
query text with hits and per-stage timings.

The Runner stands on this: a cell's final stage and its latency measurement go through the
cell's Pipeline; the Runner adds the run cache and the result files.
"""
from __future__ import annotations

import math
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping

from .cache import Cache, fingerprint
from .config import Config, Settings
from .data import Dataset, open_dataset
from .errors import ConfigError, RankbenchError, RankerUnavailable
from .types import Run, top_k

SEARCH_QID = "query"      # the id a searched text ranks under


class ContractError(RankbenchError):
    """A ranker's output breaks the contract every ranker keeps (a bug in that ranker)."""


def check_run(run: Run, queries: Iterable[str], candidates: Run | None, k: int, who: str,
              corpus: Mapping | None = None) -> None:
    """What every ranker's output must satisfy; a violation is a bug in the ranker. ``corpus``
    (the dataset's doc ids, when at hand): every returned document must be one of them."""
    qset = set(queries)
    for qid, docs in run.items():
        if qid not in qset:
            raise ContractError(f"{who} returned query {qid!r}, which it was not asked")
        if not isinstance(docs, dict):
            raise ContractError(f"{who}: query {qid!r} maps to {type(docs).__name__}, not dict")
        if len(docs) > k:
            raise ContractError(f"{who}: query {qid!r} has {len(docs)} docs, more than k={k}")
        allowed = candidates.get(qid, {}) if candidates is not None else None
        for d, s in docs.items():
            if not isinstance(d, str) or not isinstance(s, float) or not math.isfinite(s):
                raise ContractError(f"{who}: query {qid!r} doc {d!r} has score {s!r} (need a finite float)")
            if allowed is not None and d not in allowed:
                raise ContractError(f"{who}: reranking query {qid!r} returned doc {d!r}, "
                                    f"which is not among its candidates")
            if corpus is not None and d not in corpus:
                raise ContractError(f"{who}: query {qid!r} returned doc {d!r}, which is not in the corpus")


@dataclass(frozen=True)
class Hit:
    rank: int          # 1-based
    doc_id: str
    score: float
    title: str
    text: str = field(repr=False)
    first_stage_score: float | None = None    # its score in the first stage, for a reranker


@dataclass(frozen=True)
class SearchResult:
    query: str
    hits: tuple[Hit, ...]
    timings_ms: Mapping[str, float]   # each stage's rank call, in the order they finished (a fusion's includes its members')
    total_ms: float


def first_stage_k(depth: int, settings: Settings) -> int:
    """How deep a first stage ranks before its reranker's cut: as deep as a full run, at least ``depth``."""
    return max(depth, settings.k)


class RankerSet:
    """A config's rankers, each built once (``rankers.base.Rankers``, for the kinds built on others)."""

    def __init__(self, config: Config, cache: Cache | None = None, progress: bool = True, threads: int = 0,
                 models=None, log: Callable[[str], None] | None = None):
        from rankers.base import Context

        self.config = config
        self.cache = cache or Cache()
        self.settings: Settings = config.settings    # a suite's, while a runner's cell runs
        self._log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
        self.ctx = Context(cache=self.cache, root=config.root, seed=config.settings.seed, progress=progress,
                           threads=threads, models=models, rankers=self)
        self._instances: dict[str, object] = {}
        self._pipelines: dict[str, Pipeline] = {}
        self._datasets: dict[str, Dataset] = {}
        # (ranker, dataset) -> prepared only to rerank (True) or to search the corpus too (False)
        self._prepared: dict[tuple[str, str], bool] = {}
        self._resolved: set[str] = set()
        self._fingerprints: dict[tuple[str, str], str] = {}    # (ranker, dataset) -> chain fingerprint
        self._live = 0                 # > 0 while a Pipeline ranks: members rank live too
        self._timings: dict[str, float] | None = None
        # one live search at a time through these rankers: their per-call state (timings, a
        # fusion's live flag, a server's request corpus) is the set's, not the thread's
        self.lock = threading.RLock()
        # a benchmark's source of members' runs (the Runner's cache): (ranker, dataset, k) -> (run, efficiency)
        self.cached_runs: Callable[[str, Dataset, int], tuple[Run, dict]] | None = None

    def log(self, msg: str) -> None:
        self._log(msg)

    # -- building blocks -------------------------------------------------------------------------

    def dataset(self, name: str) -> Dataset:
        if name not in self._datasets:
            self._datasets[name] = open_dataset(self.config.dataset(name), self.config.root)
        return self._datasets[name]

    def instance(self, name: str):
        if name not in self._instances:
            spec = self.config.ranker(name)
            cls = spec.ranker_class().implementation(spec.params)
            self._instances[name] = cls(name, spec.params, self.ctx)
        return self._instances[name]

    def pipeline(self, name: str) -> "Pipeline":
        if name not in self._pipelines:
            self._pipelines[name] = Pipeline(self, name)
        return self._pipelines[name]

    def applicability(self, ranker: str, dataset: Dataset) -> str | None:
        """None if the ranker's chain can rank the dataset, else why not."""
        spec = self.config.ranker(ranker)
        reason = self.instance(ranker).applies_to(dataset, reranking=spec.first_stage is not None)
        if reason is None and spec.first_stage is not None:
            inner = self.applicability(spec.first_stage, dataset)
            if inner is not None:
                reason = f"first stage {spec.first_stage}: {inner}"
        if reason is None:
            cls = spec.ranker_class()
            for member in (cls.references(spec.params, ranker) if cls.runs_references else ()):
                inner = self.applicability(member, dataset)
                if inner is not None:
                    return f"member {member}: {inner}"
        return reason

    def chain_fingerprint(self, ranker: str, dataset: Dataset) -> str:
        """Computed once per (ranker, dataset): it hashes model folders."""
        memo = (ranker, dataset.name)
        if memo not in self._fingerprints:
            spec = self.config.ranker(ranker)
            inputs = self.instance(ranker).fingerprint_inputs(dataset)
            if spec.first_stage is not None:
                inputs = {"stage": inputs, "depth": spec.depth,
                          "first_stage": self.chain_fingerprint(spec.first_stage, dataset)}
            self._fingerprints[memo] = fingerprint(inputs)
        return self._fingerprints[memo]

    def resolve(self, ranker: str) -> None:
        """Every model the ranker's closure loads (first stages, members, an export's source):
        found, trained or exported, once."""
        for spec in self.config.closure(ranker):
            if spec.name not in self._resolved:
                self.instance(spec.name).resolve_models()
                self._resolved.add(spec.name)

    def prepare(self, ranker: str, dataset: Dataset) -> float:
        """Prepare a ranker and its first stages for a dataset once; returns seconds spent."""
        spec = self.config.ranker(ranker)
        spent = 0.0
        if spec.first_stage is not None:
            spent += self.prepare(spec.first_stage, dataset)
        spent += self.prepare_stage(ranker, dataset, reranking=spec.first_stage is not None)
        return spent

    def prepare_stage(self, ranker: str, dataset: Dataset, reranking: bool) -> float:
        """One ranker prepared for a dataset, once: prepared to search the corpus, it reranks too;
        prepared only to rerank (a fusion member scoring candidates), it is prepared again before
        it searches."""
        inst = self.instance(ranker)
        done = self._prepared.get((ranker, dataset.name))
        # a ranker holds one dataset at a time (its index, its encoded corpus): prepared for this
        # one earlier, then for another, it is prepared again, not taken to be ready
        current = getattr(inst, "dataset", None)
        here = current is None or current is dataset or current.name == dataset.name
        if done is not None and (reranking or not done) and here:
            return 0.0
        t0 = time.perf_counter()
        inst.prepare(dataset, reranking=reranking)
        for key in [k for k in self._prepared if k[0] == ranker and k[1] != dataset.name]:
            del self._prepared[key]
        self._prepared[(ranker, dataset.name)] = reranking
        return time.perf_counter() - t0

    def release(self, ds_name: str) -> None:
        """Free what rankers hold for a dataset."""
        for name, inst in self._instances.items():
            if self._prepared.pop((name, ds_name), None) is not None:
                inst.close()

    def footprints(self, name: str) -> list:
        return [self.instance(s.name).footprint() for s in self.config.chain(name)]

    # -- for rankers built on other rankers (fusion) -----------------------------------------------

    def member_run(self, ranker: str, dataset: Dataset, queries: Mapping[str, str], k: int) -> tuple[Run, dict]:
        """Another ranker's run for these queries and what it cost: in a benchmark (``cached_runs``
        set, the dataset's own queries, not inside a Pipeline's live ranking) its cached run with the
        efficiency recorded when it ran; otherwise ranked live now."""
        own = dataset.queries()
        if (self._live == 0 and self.cached_runs is not None
                and all(own.get(q) == text for q, text in queries.items())):
            run, eff = self.cached_runs(ranker, dataset, k)
            return {q: run.get(q, {}) for q in queries}, eff
        pipe = self.pipeline(ranker)
        pipe.prepare(dataset)      # its run may have come from the cache, unprepared
        t0 = time.perf_counter()
        run = pipe.rank(queries, k, check=False)
        return run, {"rank_s": time.perf_counter() - t0}

    def member_rerank(self, ranker: str, dataset: Dataset, queries: Mapping[str, str],
                      candidates: Run) -> tuple[Run, dict]:
        """Another ranker's final stage scoring given candidates (all of them)."""
        inst = self.instance(ranker)
        if not inst.reranks:
            raise ConfigError(f"ranker {ranker} ({inst.kind}) cannot score given candidates, so it "
                              f"cannot be a fusion member that reranks")
        self.resolve(ranker)
        self.prepare_stage(ranker, dataset, reranking=True)
        depth = max((len(v) for v in candidates.values()), default=1)
        t0 = time.perf_counter()
        run = self.pipeline(ranker).rank_stage(queries, candidates, depth)
        return run, {"rank_s": time.perf_counter() - t0, "pairs": sum(len(v) for v in candidates.values())}

    def _record(self, name: str, seconds: float) -> None:
        if self._timings is not None:
            self._timings[name] = round(self._timings.get(name, 0.0) + seconds * 1000, 3)


class Pipeline:
    """One ranker's chain, resolved once into objects (see the module's docstring)."""

    def __init__(self, rankers: RankerSet, name: str):
        self.rankers = rankers
        self.spec = rankers.config.ranker(name)
        self.ranker = rankers.instance(name)
        self.first = rankers.pipeline(self.spec.first_stage) if self.spec.first_stage else None
        self.depth = self.spec.depth
        cls = type(self.ranker)
        refs = cls.references(self.spec.params, name)
        self.members = {m: rankers.pipeline(m) for m in refs} if cls.runs_references else {}
        self.lenders = {m: rankers.instance(m) for m in refs} if not cls.runs_references else {}
        self._dataset: Dataset | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    def __repr__(self) -> str:
        return f"Pipeline({' -> '.join(reversed(self.stage_names()))})"

    def stages(self) -> list["Pipeline"]:
        """The chain, outermost first: this pipeline, its first stage, that one's first stage...
        (a fusion's members are not stages of it)."""
        return [self] + (self.first.stages() if self.first else [])

    def stage_names(self) -> list[str]:
        return [p.name for p in self.stages()]

    def _all(self) -> Iterable["Pipeline"]:
        yield self
        if self.first:
            yield from self.first._all()
        for m in self.members.values():
            yield from m._all()

    def cannot_search(self) -> str | None:
        """Why this chain cannot rank a query text that is not in its dataset, or None."""
        for p in self._all():
            if not p.ranker.new_queries:
                return (f"ranker {p.name} ({p.ranker.kind}) only knows its dataset's own queries "
                        f"(a precomputed run or the judgments), so it cannot rank a new query text")
        return None

    # -- the prepare phase -----------------------------------------------------------------------

    @property
    def dataset(self) -> Dataset | None:
        """The dataset the chain is prepared for (None once the RankerSet released it)."""
        ds = self._dataset
        if ds is None:
            return None
        rerank_only = self.rankers._prepared.get((self.name, ds.name))
        if rerank_only is None or (rerank_only and self.first is None):   # released, or not for searching
            return None
        return ds

    def prepare(self, dataset: Dataset | str) -> float:
        """Resolve every model of the chain, then build what each stage needs for the dataset
        (index, encoded corpus, loaded model); once per dataset. Returns the seconds spent."""
        if isinstance(dataset, str):
            dataset = self.rankers.dataset(dataset)
        if self._holds(dataset):
            return 0.0
        reason = self.rankers.applicability(self.name, dataset)
        if reason is not None:
            raise RankerUnavailable(f"ranker {self.name} cannot rank {dataset.name}: {reason}")
        t0 = time.perf_counter()
        self.rankers.resolve(self.name)
        spent = time.perf_counter() - t0
        if self.first is not None:
            spent += self.first.prepare(dataset)
        spent += self.rankers.prepare_stage(self.name, dataset, reranking=self.first is not None)
        for name, member in self.members.items():
            if self.first is not None:     # members score the first stage's candidates
                spent += self.rankers.prepare_stage(name, dataset, reranking=True)
            else:
                spent += member.prepare(dataset)
        self._dataset = dataset
        return spent

    def _holds(self, dataset: Dataset) -> bool:
        """Prepared for ``dataset``, and every stage and member still is (they are shared with
        other pipelines, which may have prepared them for another dataset since)."""
        if self.dataset is not dataset:
            return False
        held = getattr(self.ranker, "dataset", None)
        if held is not None and held is not dataset and held.name != dataset.name:
            return False
        if self.first is not None and not self.first._holds(dataset):
            return False
        return self.first is not None or all(m._holds(dataset) for m in self.members.values())

    def prepare_to_rerank(self, dataset: Dataset) -> float:
        """Prepare only this chain's own ranker (and a fusion's members) to score given candidates
        from ``dataset``, without the first stage: what ``rank_stage`` on a server's documents needs."""
        t0 = time.perf_counter()
        self.rankers.resolve(self.name)
        spent = time.perf_counter() - t0 + self.rankers.prepare_stage(self.name, dataset, reranking=True)
        for name in self.members:
            spent += self.rankers.prepare_stage(name, dataset, reranking=True)
        self._dataset = dataset
        return spent

    def indexed_reranker(self):
        """The bi-encoder reranking this chain's first stage (its own, or an ONNX ranker's inner
        one): it can rerank from the corpus it encoded instead of encoding candidates per query.
        None for every other chain."""
        if self.first is None or self.members:
            return None
        inner = getattr(self.ranker, "inner", self.ranker)
        return inner if callable(getattr(inner, "rerank_from_corpus", None)) else None

    def rerank_from_index(self) -> bool:
        """Encode the corpus once (cached by content) and rerank from its rows, so a query costs
        one encoding, not one per candidate: what a deployment does. False when the chain's
        reranker is not a bi-encoder (nothing changes)."""
        encoder = self.indexed_reranker()
        if encoder is None:
            return False
        self.rankers.prepare_stage(self.name, self._need(), reranking=False)    # encodes the corpus
        encoder.rerank_from_corpus()
        return True

    def _need(self) -> Dataset:
        if self.dataset is None:
            raise RankerUnavailable(f"pipeline {self.name} is not prepared: call prepare(dataset) first")
        return self.dataset

    # -- ranking -----------------------------------------------------------------------------------

    def rank(self, queries: Mapping[str, str], k: int | None = None, check: bool = True) -> Run:
        """Rank the queries live through the whole chain (first stages, members), nothing from a
        cache: what serving them costs. ``k`` defaults to the config's depth of a full run."""
        return self._rank_chain(queries, k, check)[0]

    def _rank_chain(self, queries: Mapping[str, str], k: int | None, check: bool) -> tuple[Run, Run | None]:
        """The chain's ranking and the first stage's candidates it reranked (None without one)."""
        self._need()
        k = k or self.rankers.settings.k
        queries = dict(queries)
        rs = self.rankers
        rs._live += 1
        try:
            candidates = None
            if self.first is not None:
                held = self.first.dataset
                if held is not None and self.dataset is not None and held.name != self.dataset.name:
                    raise RankerUnavailable(
                        f"ranker {self.name}: its first stage {self.first.name} is prepared for {held.name} now, "
                        f"not for {self.dataset.name} (another pipeline prepared it since): call "
                        f"prepare({self.dataset.name}) again")
                first = self.first.rank(queries, first_stage_k(self.depth, rs.settings), check=check)
                candidates = top_k(first, self.depth)
            return self.rank_stage(queries, candidates, k, check=check), candidates
        finally:
            rs._live -= 1

    def rank_stage(self, queries: Mapping[str, str], candidates: Run | None, k: int, check: bool = True) -> Run:
        """This chain's own ranker alone, on given candidates (or the corpus)."""
        from rankers.base import ranking

        dataset = self.dataset or self.ranker.dataset
        held = getattr(self.ranker, "dataset", None)
        if self.dataset is not None and held is not None and held is not self.dataset and held.name != self.dataset.name:
            raise RankerUnavailable(f"ranker {self.name} is prepared for {held.name} now, not for {self.dataset.name} "
                                    f"(another pipeline prepared it since): call prepare({self.dataset.name}) again")
        t0 = time.perf_counter()
        with ranking(f"ranker {self.name}"):
            run = self.ranker.rank(queries, candidates, k)
        self.rankers._record(self.name, time.perf_counter() - t0)
        if check:
            check_run(run, queries, candidates, k, f"ranker {self.name} ({self.ranker.kind})",
                      dataset.doc_ids() if dataset is not None else None)
        return run

    def search(self, query: str, k: int = 10) -> SearchResult:
        """One query text, ranked live: the top ``k`` hits with their text, and each stage's time."""
        dataset = self._need()
        if not isinstance(query, str) or not query.strip():
            raise ValueError(f"search: the query must be a non-empty string, got {query!r}")
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"search: k must be a positive integer, got {k!r}")
        reason = self.cannot_search()
        if reason is not None:
            raise RankerUnavailable(reason)
        rs = self.rankers
        with rs.lock:                  # thread-safe: concurrent callers take turns
            outer, rs._timings = rs._timings, {}
            t0 = time.perf_counter()
            try:
                run, candidates = self._rank_chain({SEARCH_QID: query}, k, check=True)
                timings = rs._timings
            finally:
                rs._timings = outer
            total = (time.perf_counter() - t0) * 1000
        from .types import ranked

        top = ranked(run.get(SEARCH_QID, {}))[:k]
        docs = dataset.docs([d for d, _ in top])
        first = (candidates or {}).get(SEARCH_QID, {})
        hits = tuple(Hit(rank=i, doc_id=d, score=s, title=docs[d].title, text=docs[d].text,
                         first_stage_score=first.get(d) if candidates is not None else None)
                     for i, (d, s) in enumerate(top, 1))
        return SearchResult(query=query, hits=hits, timings_ms=dict(timings), total_ms=round(total, 3))

    def close(self) -> None:
        """Free what the chain's rankers hold for its dataset."""
        dataset = self.dataset
        if dataset is not None:
            for p in self._all():
                if self.rankers._prepared.pop((p.name, dataset.name), None) is not None:
                    p.ranker.close()
