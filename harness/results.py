"""Result files: one JSON per (suite, ranker, dataset) cell under reports/results/, where it lies
and how it is read back (its shape checked, so a damaged file is an error naming it)."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from .errors import DataError


def result_path(reports: Path, suite: str, ranker: str, dataset: str) -> Path:
    return reports / "results" / suite / f"{ranker}__{dataset}.json"


# what a report reads of an "ok" result: (key path, type)
_OK_SHAPE = ((("measures", "aggregate"), dict), (("measures", "per_query"), dict), (("efficiency",), dict),
             (("dataset_info",), dict), (("provenance", "machine", "id"), str), (("ranker_config",), dict))


def read_result(path: Path) -> dict:
    """A result JSON, its shape checked: a truncated or hand-edited file is an error naming it
    and what it lacks, never a traceback in the report."""
    from .files import read_text

    try:
        result = json.loads(read_text(path))
    except json.JSONDecodeError as e:
        raise DataError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None
    fix = f"rerun the cell (`rankbench run {path.parent.name}`) or delete the file"
    if not isinstance(result, dict) or result.get("status") not in ("ok", "n/a"):
        raise DataError(f"{path}: not a rankbench result (its status must be \"ok\" or \"n/a\"); {fix}")
    if result["status"] == "ok":
        for keys, tp in _OK_SHAPE:
            value = result
            for k in keys:
                value = value.get(k) if isinstance(value, dict) else None
            if not isinstance(value, tp):
                raise DataError(f"{path}: {'.'.join(keys)} is missing or not a {tp.__name__}; {fix}")
        for m, v in result["measures"]["aggregate"].items():
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise DataError(f"{path}: measures.aggregate.{m} = {v!r} is not a number; {fix}")
    return result


# -- what a cell cost ---------------------------------------------------------------------------

_MEMORY = ("peak_rss_mib", "rss_increase_mib", "memory_method")
_RERANKING = ("pairs", "pairs_per_s", "first_stage", "pipeline_rank_s", "pipeline_qps")


@dataclass(frozen=True)
class Reranking:
    """A reranker's extra figures: the pairs it scored, and the whole pipeline's time."""

    pairs: int
    pairs_per_s: float | None
    first_stage: dict              # ranker, depth, precomputed, rank_s
    pipeline_rank_s: float
    pipeline_qps: float | None


@dataclass(frozen=True)
class Efficiency:
    """A result's "efficiency": what the cell cost, measured as docs/MEASUREMENT.md says. The JSON
    keeps the order of the fields, the memory figures, the ranker's own figures, then reranking's."""

    machine: str | None            # where these figures were measured (provenance machine id)
    device: str
    cpu_threads: int
    precomputed: bool
    queries: int
    prepare_s: float
    index_build_s: float | None
    rank_s: float
    qps: float | None
    latency_ms: dict | None        # p50, p95, p99, mean, n, warmup, scope
    index_bytes: int
    model_bytes: int
    params: int
    dtype: str | None
    memory: dict = field(default_factory=dict)          # peak_rss_mib, rss_increase_mib, memory_method
    other_load_cores: float | None = None               # cores other processes kept busy meanwhile
    ranker_stats: dict = field(default_factory=dict)    # the ranker's run_stats() (truncation, ...)
    reranking: Reranking | None = None
    # a bi-encoder reranker timed again with its candidates' embeddings computed ahead (a
    # deployment's index): the same keys as latency_ms; absent for every other ranker
    indexed_latency_ms: dict | None = None
    # where it was measured: own (a fresh process, harness.isolation), start_s, runtime (JVM,
    # torch, onnxruntime) and runtime_start_s, baseline_rss_mib, loaded (the heavy runtimes its
    # process imported: harness.isolation.RUNTIMES)
    process: dict | None = None

    def as_json(self) -> dict:
        out = {k: getattr(self, k) for k in ("machine", "device", "cpu_threads", "precomputed", "queries",
                                              "prepare_s", "index_build_s", "rank_s", "qps", "latency_ms",
                                              "index_bytes", "model_bytes", "params", "dtype")}
        if self.machine is None:       # results from before the machine was recorded here
            del out["machine"]
        if self.indexed_latency_ms is not None:
            out["indexed_latency_ms"] = self.indexed_latency_ms
        out.update(self.memory)
        if self.other_load_cores is not None:
            out["other_load_cores"] = self.other_load_cores
        if self.process is not None:
            out["process"] = self.process
        out.update(self.ranker_stats)
        if self.reranking is not None:
            out.update(dataclasses.asdict(self.reranking))
        return out

    @classmethod
    def from_json(cls, d: dict) -> "Efficiency":
        named = {f.name for f in dataclasses.fields(cls)} - {"memory", "ranker_stats", "reranking"}
        rerank = Reranking(**{k: d[k] for k in _RERANKING}) if "pairs" in d and "first_stage" in d else None
        return cls(**{k: d.get(k) for k in named},
                   memory={k: d[k] for k in _MEMORY if k in d},
                   ranker_stats={k: v for k, v in d.items() if k not in named and k not in _MEMORY
                                 and not (rerank and k in _RERANKING)},
                   reranking=rerank)
