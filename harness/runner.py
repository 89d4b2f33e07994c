"""Run a suite: every (ranker, dataset) cell of bench.toml, cached by content and resumable.

A cell's run is cached under a fingerprint of its whole ranker chain (kind, parameters, model
hashes, first stage and depth), the dataset's files, the depth k and the code version. Each
finished cell's result JSON is written at once (atomically), so an interrupted suite loses no
finished cell and a re-run only does what is missing or changed.
"""
from __future__ import annotations

import json
import math
import os
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Mapping

from . import CODE_VERSION
from .cache import Cache, fingerprint
from .config import Config, Settings, SuiteSpec
from .data import Dataset
from .errors import DataError, RankbenchError
from .files import atomic_write_text, check_writable, sweep_stale
from .measures import evaluate
from .memory import OtherLoad, PeakMemory
from .pipeline import Pipeline, RankerSet, check_run, first_stage_k
from .provenance import provenance
from .results import Efficiency, Reranking, read_result, result_path
from .timing import phase
from .types import Run, drop_self_hits, parse_trec_run, read_trec_run, top_k, trec_run_lines, write_trec_run

RESULT_SCHEMA = 1


@dataclass(frozen=True)
class CellOutcome:
    ranker: str
    dataset: str
    status: str            # ran | cached-run | up-to-date | n/a | error
    message: str = ""
    seconds: float = 0.0


def reproduce_command(suite: str, ranker: str, dataset: str) -> str:
    return f"rankbench run {suite} --ranker {ranker} --dataset {dataset}"


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default), without importing numpy."""
    xs = sorted(values)
    if not xs:
        return float("nan")
    pos = (len(xs) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


class Runner:
    """A suite's cells: each (ranker, dataset) run through its Pipeline, cached by content, and
    written as a result JSON. The rankers themselves live in a ``RankerSet`` (``self.rankers``)."""

    def __init__(self, config: Config, reports: Path, cache: Cache | None = None, progress: bool = True,
                 force: bool = False, threads: int = 0, log: Callable[[str], None] | None = None,
                 executor: Callable[[], dict] | None = None,
                 isolate: Callable[..., tuple[Run, dict]] | None = None):
        """``executor``: what a distributed executor records about where a cell ran (its node),
        written into the result's provenance; None for this process (the local executor).
        ``isolate``: where a run is made and measured instead of ``self.measure`` in this process,
        called as ``self.measure`` is, with this runner first: ``harness.isolation.measure_in_child``
        (a fresh process per run, so its peak memory is its own) is what ``rankbench run`` uses."""
        from training.recipes import TrainedModels

        self.config = config
        self.reports = Path(reports)
        self.cache = cache or Cache()
        self.force = force
        self.log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
        self.models = TrainedModels(self)
        self.rankers = RankerSet(config, self.cache, progress=progress, threads=threads, models=self.models,
                                 log=self.log)
        self.rankers.cached_runs = self._member_cached_run
        self.ctx = self.rankers.ctx
        self.executor = executor
        self.isolate = isolate
        self._provenance: dict | None = None

    # -- what training and the CLI ask (the RankerSet's, by name) -----------------------------------

    def dataset(self, name: str) -> Dataset:
        return self.rankers.dataset(name)

    def instance(self, name: str):
        return self.rankers.instance(name)

    def pipeline(self, name: str) -> Pipeline:
        return self.rankers.pipeline(name)

    def applicability(self, ranker: str, dataset: Dataset) -> str | None:
        return self.rankers.applicability(ranker, dataset)

    def chain_fingerprint(self, ranker: str, dataset: Dataset) -> str:
        return self.rankers.chain_fingerprint(ranker, dataset)

    def member_rerank(self, ranker: str, dataset: Dataset, queries: Mapping[str, str],
                      candidates: Run) -> tuple[Run, dict]:
        return self.rankers.member_rerank(ranker, dataset, queries, candidates)

    def measures_for(self, suite: SuiteSpec, ds_name: str) -> list[str]:
        dataset = self.dataset(ds_name)
        base = suite.measures.get(ds_name) or suite.default_measures or dataset.conventions.measures
        return list(dict.fromkeys(tuple(base) + tuple(suite.extra_measures)))

    def run_key(self, ranker: str, dataset: Dataset, k: int) -> str:
        return fingerprint({"chain": self.chain_fingerprint(ranker, dataset), "dataset": dataset.fingerprint(),
                            "k": k, "code": CODE_VERSION})

    def _member_cached_run(self, ranker: str, dataset: Dataset, k: int) -> tuple[Run, dict]:
        run, eff, _ = self.get_run(ranker, dataset, k, self.rankers.settings)
        return run, eff

    # -- runs --------------------------------------------------------------------------------------

    def get_run(self, ranker: str, dataset: Dataset, k: int, settings: Settings) -> tuple[Run, dict, str]:
        """The ranker's run on the dataset (cached or computed now), its efficiency, and how."""
        rs = self.rankers
        outer, rs.settings = rs.settings, settings   # what a fusion's members and first stages run with
        try:
            return self._get_run(ranker, dataset, k, settings)
        finally:
            rs.settings = outer

    def _get_run(self, ranker: str, dataset: Dataset, k: int, settings: Settings) -> tuple[Run, dict, str]:
        key = self.run_key(ranker, dataset, k)
        with phase("cached runs read"):
            cached = None if self.force else self._cached_run(ranker, dataset, k, key)
        if cached is not None:
            return cached
        # one worker makes a run; another that wants it meanwhile waits, then reads it
        with self.cache.lock("runs", key, f"the run of {ranker} on {dataset.name}"):
            cached = None if self.force else self._cached_run(ranker, dataset, k, key)
            return cached if cached is not None else self._make_run(ranker, dataset, k, settings, key)

    def _cached_run(self, ranker: str, dataset: Dataset, k: int, key: str) -> tuple[Run, dict, str] | None:
        hit = self.cache.get("runs", key)
        if hit is None:
            return None
        try:
            entry = json.loads((hit / "entry.json").read_text(encoding="utf-8"))
            run = read_trec_run(hit / "run.trec.gz")
            check_run(run, dataset.queries(), None, k, f"cached run of {ranker}", dataset.doc_ids())
            return run, entry["efficiency"], "cached-run"
        except (RankbenchError, OSError, ValueError, KeyError) as e:
            self.cache.quarantine("runs", key, f"the run of {ranker} on {dataset.name} could not be "
                                               f"read back: {e}")
            return None

    def _make_run(self, ranker: str, dataset: Dataset, k: int, settings: Settings,
                  key: str) -> tuple[Run, dict, str]:
        pipe = self.pipeline(ranker)
        spec, inst = pipe.spec, pipe.ranker
        queries = dataset.queries()
        candidates, first_eff = None, None
        if spec.first_stage is not None:
            first_run, first_eff, _ = self.get_run(spec.first_stage, dataset,
                                                   first_stage_k(spec.depth, settings), settings)
            candidates = top_k(first_run, spec.depth)
        if self.isolate is not None:
            run, m = self.isolate(self, ranker, dataset, k, settings, candidates=candidates)
        else:
            run, m = self.measure(ranker, dataset, k, settings, candidates=candidates)
        from . import timing

        timing.ranker("runtime start", m["process"]["runtime_start_s"])
        for what, field in (("prepare", "prepare_s"), ("rank", "rank_wall_s"), ("latency queries", "latency_s")):
            timing.ranker(what, m.get(field, 0.0))
        rank_s = m["rank_s"]
        fp = m["footprint"]
        n = len(queries)
        reranking = None
        if candidates is not None:
            pairs = sum(len(v) for v in candidates.values())
            first_s = 0.0 if first_eff.get("precomputed") else first_eff.get("pipeline_rank_s", first_eff["rank_s"])
            reranking = Reranking(
                pairs=pairs, pairs_per_s=round(pairs / rank_s, 2) if rank_s > 0 else None,
                first_stage={"ranker": spec.first_stage, "depth": spec.depth,
                             "precomputed": bool(first_eff.get("precomputed")), "rank_s": first_eff["rank_s"]},
                pipeline_rank_s=round(first_s + rank_s, 4),
                pipeline_qps=round(n / (first_s + rank_s), 3) if (first_s + rank_s) > 0 else None)
        eff = Efficiency(
            machine=self.provenance()["machine"]["id"], device=fp["device"],
            cpu_threads=self.ctx.threads or os.cpu_count(), precomputed=inst.precomputed, queries=n,
            prepare_s=round(m["prepare_s"], 3), index_build_s=fp["build_seconds"], rank_s=round(rank_s, 4),
            qps=None if inst.precomputed else round(n / rank_s, 3) if rank_s > 0 else None,
            latency_ms=m["latency"], indexed_latency_ms=m["indexed_latency"], index_bytes=fp["index_bytes"],
            model_bytes=fp["model_bytes"], params=fp["params"], dtype=fp["dtype"], memory=m["memory"],
            other_load_cores=m["other_load_cores"], ranker_stats=m["stats"], process=m["process"],
            reranking=reranking).as_json()
        describe = {"what": "run", "ranker": ranker, "dataset": dataset.name, "k": k, "efficiency": eff}
        with phase("runs cached"), self.cache.build("runs", key, describe, replace=self.force) as folder:
            text = write_trec_run(run, folder / "run.trec.gz", tag=ranker)
            # read back (the text written, parsed as a file is) before the entry is published: a
            # run that does not round-trip never enters the cache, and a fresh run and a cached
            # one evaluate the same bytes
            stored = parse_trec_run(trec_run_lines(text), folder / "run.trec.gz")
            if stored != {q: docs for q, docs in run.items() if docs}:   # a query with no docs has no line
                raise DataError(f"ranker {ranker} on {dataset.name}: its run does not read back the same "
                                f"from the TREC file; not cached")
        return stored, eff, "ran"

    def measure(self, ranker: str, dataset: Dataset, k: int, settings: Settings,
                whole_process: bool = False, candidates: Run | None = None,
                check: bool = True) -> tuple[Run, dict]:
        """Make the ranker's run on the dataset in this process, and measure it: the runtime's
        start (JVM, torch), ``prepare`` (loading), ``rank`` over every query, the latency queries,
        peak memory. ``whole_process``: this process is the cell's own (harness.isolation), so
        its peak memory is read as is, since it started. ``candidates``: the first stage's top
        ``depth``, when the caller has them (else read from its cached run). ``check``: the run
        is checked against the dataset here (else by the caller, before it is cached)."""
        from dataclasses import asdict

        pipe = self.pipeline(ranker)
        spec, inst = pipe.spec, pipe.ranker
        queries = dataset.queries()
        if spec.first_stage is not None and candidates is None:
            first_run, _, _ = self.get_run(spec.first_stage, dataset, first_stage_k(spec.depth, settings), settings)
            candidates = top_k(first_run, spec.depth)
        with PeakMemory(reset=not whole_process) as mem, OtherLoad() as load:
            process = self._start_runtimes(pipe)
            prepare_s = pipe.prepare(dataset)
            t0 = time.perf_counter()
            run = pipe.rank_stage(queries, candidates, k, check=False)
            rank_wall_s = rank_s = time.perf_counter() - t0
            if check:
                check_run(run, queries, candidates, k, f"ranker {ranker} ({spec.kind})", dataset.doc_ids())
            stats = inst.run_stats()
            rank_s = stats.pop("rank_s", rank_s)   # a fusion reports its members' time, not the cache's
            latency = indexed_latency = None
            t0 = time.perf_counter()
            if not inst.precomputed and settings.latency_queries > 0:
                latency, indexed_latency = self.measure_latency(ranker, dataset, k, settings)
            latency_s = time.perf_counter() - t0
        memory = mem.as_dict()
        if whole_process:
            memory["memory_method"] = "VmHWM of the cell's own process"
        return run, {"prepare_s": prepare_s, "rank_s": rank_s, "rank_wall_s": rank_wall_s, "latency_s": latency_s,
                     "stats": stats, "latency": latency,
                     "indexed_latency": indexed_latency, "memory": memory, "other_load_cores": load.cores,
                     "footprint": asdict(inst.footprint()), "process": process}

    def _start_runtimes(self, pipe: Pipeline) -> dict:
        """Start what the chain's rankers run on (``Ranker.start_runtime``: the JVM, torch,
        onnxruntime), timed on its own: never inside prepare, rank or latency."""
        t0 = time.perf_counter()
        names: list[str] = []
        for stage in pipe.stages():
            for inst in [stage.ranker] + [self.instance(m) for m in stage.members]:
                name = inst.start_runtime()
                if name and name not in names:
                    names.append(name)
        return {"runtime": "+".join(names) or None, "runtime_start_s": round(time.perf_counter() - t0, 3)}

    def measure_latency(self, ranker: str, dataset: Dataset, k: int, settings: Settings) -> tuple[dict, dict | None]:
        """Per-query latency: queries ranked one at a time through the whole chain, after warm-up.
        A bi-encoder reranking a first stage is timed twice: online (each query encodes its
        candidates, as the run did) and indexed (the candidates' embeddings computed ahead, as a
        deployment that encoded its corpus has them: only the query is encoded). The indexed pass
        reads the embeddings the online pass computed, so it costs no extra encoding."""
        import random

        queries = dataset.queries()
        qids = sorted(queries)
        rng = random.Random(settings.seed)
        sample = rng.sample(qids, min(settings.latency_queries, len(qids)))
        warmup = sample[: settings.latency_warmup]
        pipe = self.pipeline(ranker)
        pipe.prepare(dataset)

        def timed() -> list[float]:
            for qid in warmup:
                pipe.rank({qid: queries[qid]}, k, check=False)
            times = []
            for qid in sample:
                t0 = time.perf_counter()
                pipe.rank({qid: queries[qid]}, k, check=False)
                times.append((time.perf_counter() - t0) * 1000)
            return times

        def summary(times: list[float], scope: str) -> dict:
            return {"p50": round(percentile(times, 50), 3), "p95": round(percentile(times, 95), 3),
                    "p99": round(percentile(times, 99), 3), "mean": round(sum(times) / len(times), 3),
                    "n": len(times), "warmup": len(warmup), "scope": scope}

        scope = "end to end"
        stages = pipe.stages()
        if len(stages) > 1 and all(p.ranker.precomputed for p in stages[1:]):
            scope = "rerank stage (first stage is a precomputed run)"
        encoder = pipe.indexed_reranker()
        if encoder is None:
            return summary(timed(), scope), None
        with encoder.recording() as embeddings:
            online = summary(timed(), scope)
        with encoder.indexed(embeddings):
            indexed = summary(timed(), f"{scope}; candidates' embeddings computed ahead, only the query "
                                       f"encoded online")
        return online, indexed

    # -- cells -------------------------------------------------------------------------------------

    def provenance(self) -> dict:
        if self._provenance is None:
            self._provenance = provenance(self.config.root)
        return self._provenance

    def _cached_efficiency(self, key: str) -> dict | None:
        """The efficiency figures of the cached run under ``key``; None when there is none (or it
        cannot be read: the run is then made again, and the damaged entry quarantined there)."""
        hit = self.cache.get("runs", key)
        if hit is None:
            return None
        try:
            return json.loads((hit / "entry.json").read_text(encoding="utf-8")).get("efficiency")
        except (OSError, ValueError, AttributeError):
            return None

    def up_to_date(self, suite: SuiteSpec, ranker: str, ds_name: str) -> bool:
        """The cell's result JSON is up to date: same inputs, same measures, and the run is in this
        machine's cache with the figures the result quotes. A result committed from elsewhere is
        reproduced here, not trusted (its efficiency figures belong to the machine that measured
        them), and one whose run was measured again (--force in another suite) takes the new
        figures. Never with --force."""
        path = result_path(self.reports, suite.name, ranker, ds_name)
        if self.force or not path.exists():
            return False
        dataset = self.dataset(ds_name)
        try:
            old = read_result(path)
        except DataError:      # damaged or foreign: not up to date, so it is run again
            return False
        reason = self.applicability(ranker, dataset)
        if reason is not None:
            return old.get("status") == "n/a" and old.get("reason") == reason
        key = self.run_key(ranker, dataset, suite.settings.k)
        return (old.get("status") == "ok" and old.get("fingerprints", {}).get("cell") == key
                and list(old.get("measures", {}).get("aggregate", {})) == self.measures_for(suite, ds_name)
                and self._cached_efficiency(key) == old.get("efficiency"))

    def run_cell(self, suite: SuiteSpec, ranker: str, ds_name: str) -> CellOutcome:
        t0 = time.perf_counter()
        path = result_path(self.reports, suite.name, ranker, ds_name)
        dataset = self.dataset(ds_name)
        settings = suite.settings
        spec = self.config.ranker(ranker)
        reason = self.applicability(ranker, dataset)
        base = {"schema": RESULT_SCHEMA, "suite": suite.name, "ranker": ranker, "dataset": ds_name}
        if reason is not None:
            atomic_write_text(path, json.dumps({**base, "status": "n/a", "reason": reason}, indent=1) + "\n")
            return CellOutcome(ranker, ds_name, "n/a", reason)
        measures = self.measures_for(suite, ds_name)
        key = self.run_key(ranker, dataset, settings.k)
        with phase("up-to-date checks"):
            current = self.up_to_date(suite, ranker, ds_name)
        if current:
            return CellOutcome(ranker, ds_name, "up-to-date", "", time.perf_counter() - t0)
        run, eff, how = self.get_run(ranker, dataset, settings.k, settings)
        if dataset.conventions.drop_self_hits:
            run = drop_self_hits(run)
        with phase("evaluation"):
            ev = evaluate(run, dataset.qrels(), measures)
        result = {
            **base,
            "status": "ok",
            "description": spec.description,
            "ranker_config": {"kind": spec.kind, "params": _params(spec.params),
                              "first_stage": spec.first_stage, "depth": spec.depth},
            "dataset_info": {"source": dataset.source, "split": dataset.split, "title": dataset.title,
                             "conventions": dataset.conventions.name, "queries": len(dataset.queries()),
                             "rerank_only": dataset.rerank_only,
                             **({"irds_seeded_from": str(self.config.dataset(ds_name).seed_from)}
                                if self.config.dataset(ds_name).seed_from else {})},
            "k": settings.k,
            **({"warnings": dataset.warnings()} if dataset.warnings() else {}),
            "measures": {"aggregate": ev.aggregate, "per_query": ev.per_query},
            "efficiency": eff,
            "fingerprints": {"cell": key, "ranker": self.chain_fingerprint(ranker, dataset),
                             "dataset": dataset.fingerprint()},
            "provenance": {**self.provenance(), **({"executor": self.executor()} if self.executor else {})},
            "command": reproduce_command(suite.name, ranker, ds_name),
        }
        trained = self.models.records(ranker)
        if trained:
            result["trained_models"] = trained
        with phase("result files"):
            atomic_write_text(path, json.dumps(result, indent=1, sort_keys=False) + "\n")
        first = measures[0]
        return CellOutcome(ranker, ds_name, how, f"{first}={ev.aggregate[first]:.4f}", time.perf_counter() - t0)

    def run_suite(self, suite_name: str, rankers: Iterable[str] | None = None,
                  datasets: Iterable[str] | None = None, shard: tuple[int, int] | None = None) -> list[CellOutcome]:
        """The suite's cells in order (optionally some rankers, datasets, or share ``shard`` =
        (index, count) of ``harness.plan``), one at a time in this process."""
        suite = self.config.suite(suite_name)
        cells = suite_cells(suite, rankers, datasets)
        if shard is not None:
            cells = [c for j, c in enumerate(cells) if j % shard[1] == shard[0]]
        self.preflight(suite_name)
        outcomes = []
        for i, (r, d) in enumerate(cells, 1):
            prefix = f"[{suite_name} {i}/{len(cells)}] {r} on {d}"
            self.log(f"{prefix} ...")
            try:
                out = self.run_cell(suite, r, d)
            except RankbenchError as e:
                out = CellOutcome(r, d, "error", str(e))
            except Exception as e:   # a bug in one cell must not cost the others
                out = CellOutcome(r, d, "error", f"{type(e).__name__}: {e}\n{traceback.format_exc()}")
            outcomes.append(out)
            detail = f": {out.message}" if out.message else ""
            self.log(f"{prefix}: {out.status} ({out.seconds:.1f} s){detail}")
            if i < len(cells) and cells[i][1] != d:
                self.rankers.release(d)
        return outcomes

    def preflight(self, suite_name: str) -> None:
        """Before any work: the cache home and the suite's results folder are writable folders
        (else a StorageError naming them), and what killed runs left half-built is removed."""
        self.cache.check_home()
        folder = check_writable(self.reports / "results" / suite_name, "results folder")
        for gone in self.cache.sweep() + sweep_stale(folder):
            self.log(f"removed {gone}, left by an interrupted run")


def _params(params) -> dict:
    from .params import as_dict

    return as_dict(params)


def suite_cells(suite: SuiteSpec, rankers: Iterable[str] | None = None,
                datasets: Iterable[str] | None = None) -> list[tuple[str, str]]:
    """The suite's (ranker, dataset) cells in order: dataset by dataset, rankers in suite order."""
    only_r = _subset(rankers, suite.rankers, "ranker", suite.name)
    only_d = _subset(datasets, suite.datasets, "dataset", suite.name)
    return [(r, d) for d in only_d for r in only_r]


def _subset(chosen: Iterable[str] | None, available: tuple[str, ...], what: str, suite: str) -> list[str]:
    from .errors import ConfigError, unknown

    if not chosen:
        return list(available)
    chosen = list(chosen)
    for c in chosen:
        if c not in available:
            raise ConfigError(unknown(f"{what} of suite {suite}", c, available))
    return [a for a in available if a in chosen]
