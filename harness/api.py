"""rankbench from Python (a notebook, a script): the CLI's config, cache and measures, as objects.

    import harness.api as rb

    bench = rb.load("bench.toml")
    pipe = bench.pipeline("bm25s", "scifact")          # prepared on SciFact's corpus
    pipe.search("do statins lower mortality?", k=3)     # hits, with text and per-stage timings
    bench.evaluate(["bm25s", "minilm"], "scifact").aggregate    # a pandas DataFrame

``evaluate`` goes through the same content-addressed cache as ``rankbench run``: a run the CLI
computed is read back, and a run computed here is one the CLI will find. It writes no result
files and no report. ``add_ranker`` takes a Ranker class of your own (or a "module:Class" path,
as ``kind =`` does in bench.toml) and checks its parameters as bench.toml's are.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Mapping

from .cache import Cache
from .config import DEFAULT_CONFIG, Config, load_config, with_ranker
from .data import Corpus
from .errors import ConfigError, RankerUnavailable
from .measures import evaluate as _evaluate
from .measures import parse_measures
from .pipeline import Pipeline, SearchResult
from .runner import Runner
from .types import Run, drop_self_hits

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class Evaluation:
    """What ``Bench.evaluate`` returns, in PyTerrier's shapes."""

    aggregate: "pd.DataFrame"    # one row per ranker: "ranker", then each measure (and the baseline comparison)
    per_query: "pd.DataFrame"    # one row per (ranker, query, measure): "ranker", "qid", "measure", "value"
    runs: Mapping[str, Run]      # each ranker's run, as evaluated


class Bench:
    """A bench.toml's rankers and datasets, with the CLI's cache (``RANKBENCH_HOME``)."""

    def __init__(self, config: Config, cache: Cache | None = None, progress: bool = False, threads: int = 0,
                 reports: str | Path | None = None, log=None):
        self._runner = Runner(config, Path(reports) if reports else config.root / "reports", cache=cache,
                              progress=progress, threads=threads, log=log)     # None: stderr (training says so)

    @property
    def config(self) -> Config:
        return self._runner.config

    @property
    def rankers(self) -> list[str]:
        return list(self.config.rankers)

    @property
    def datasets(self) -> list[str]:
        return list(self.config.datasets)

    def add_ranker(self, name: str, kind: "str | type", *, first_stage: str | None = None, depth: int | None = None,
                   description: str = "", **params) -> None:
        """One more ranker, as if bench.toml had ``[rankers.NAME]`` with these keys. ``kind``: a
        kind name, a "module:Class" path, or a Ranker class."""
        table = dict(params)
        if first_stage is not None:
            table["first_stage"] = first_stage
        if depth is not None:
            table["depth"] = depth
        if description:
            table["description"] = description
        config = with_ranker(self.config, name, kind, table)
        self._runner.config = config
        self._runner.rankers.config = config

    def pipeline(self, ranker: str, dataset: "str | Corpus | None" = None) -> Pipeline:
        """The ranker's chain, prepared for a dataset of bench.toml (its corpus), or for a Corpus of
        your own documents (``harness.data.Corpus``), when one is given."""
        pipe = self._runner.pipeline(ranker)
        if dataset is not None:
            pipe.prepare(self._runner.dataset(dataset) if isinstance(dataset, str) else dataset)
        return pipe

    def search(self, ranker: str, dataset: "str | Corpus", query: str, k: int = 10) -> SearchResult:
        return self.pipeline(ranker, dataset).search(query, k)

    def run(self, ranker: str, dataset: str, k: int | None = None) -> Run:
        """The ranker's run on every query of the dataset: from the cache, or computed and cached."""
        runner = self._runner
        ds = runner.dataset(dataset)
        reason = runner.applicability(ranker, ds)
        if reason is not None:
            raise RankerUnavailable(f"ranker {ranker} cannot rank {dataset}: {reason}")
        settings = self.config.settings
        if k is not None:
            import dataclasses

            settings = dataclasses.replace(settings, k=k)
        run, _, _ = runner.get_run(ranker, ds, settings.k, settings)
        return drop_self_hits(run) if ds.conventions.drop_self_hits else run

    def evaluate(self, rankers: Iterable[str], dataset: str, measures: Iterable[str] | None = None,
                 baseline: str | None = None, k: int | None = None) -> Evaluation:
        """Each ranker's run on the dataset, measured as a suite measures it (the dataset's
        conventions, trec_eval -c). With ``baseline``: per measure, how many queries each ranker
        wins (+) and loses (-) against it, and the paired test's Holm-corrected p-value."""
        import pandas as pd

        rankers = list(rankers)
        if not rankers:
            raise ConfigError("evaluate: name at least one ranker")
        if baseline is not None and baseline not in rankers:
            raise ConfigError(f"evaluate: baseline {baseline!r} must be one of the rankers evaluated: {rankers}")
        ds = self._runner.dataset(dataset)
        names = list(measures) if measures is not None else list(ds.conventions.measures)
        parse_measures(names, "evaluate measures")
        runs, results = {}, {}
        for r in rankers:
            runs[r] = self.run(r, dataset, k)
            results[r] = _evaluate(runs[r], ds.qrels(), names)
        rows = [{"ranker": r, **results[r].aggregate} for r in rankers]
        if baseline is not None:
            from .significance import Tester

            s = self.config.settings
            tester = Tester(s.significance, s.permutations, s.seed)
            for m in names:
                cmp = tester.against_baseline({r: results[r].per_query[m] for r in rankers}, baseline)
                for row in rows:
                    c = cmp.get(row["ranker"])
                    row[f"{m} +"], row[f"{m} -"] = (c.wins, c.losses) if c else (None, None)
                    row[f"{m} p"] = c.p_holm if c else None
        aggregate = pd.DataFrame(rows)
        for col in aggregate.columns:
            if col.endswith((" +", " -")):
                aggregate[col] = aggregate[col].astype("Int64")
        per_query = pd.DataFrame([{"ranker": r, "qid": q, "measure": m, "value": v}
                                  for r in rankers for m in names for q, v in results[r].per_query[m].items()])
        return Evaluation(aggregate, per_query, runs)


def load(path: str | Path = DEFAULT_CONFIG, **kwargs) -> Bench:
    """A Bench from a bench.toml (validated as ``rankbench validate`` does)."""
    return Bench(load_config(path), **kwargs)
