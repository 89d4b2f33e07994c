"""Calibrating a ranker's scores on held-out judged pairs: collect (score, relevant?) pairs from a
chain's ranking of a dataset, fit the four calibrators, and cache them by the scorer's identity.

Pairs: every (query, document) a chain returns for a sample of the dataset's queries (seeded),
labelled relevant when the qrels grade it at the dataset's relevance level or above (an
unjudged document counts as not relevant, as the measures count it). A cached benchmark run is
used where there is one; otherwise the sampled queries are ranked live. The calibrator belongs
to the scorer (the model: a chain's reranker without its first stage), so one fitted on DL 2019
through the BM25-run chain serves the same model behind BM25 on BEIR; every ONNX export and
every student is its own scorer with its own calibrator.

Held out: the fit and test datasets must differ in content and share no query text.
"""
from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

from harness.calibration import METHODS, Calibrator, fit
from harness.errors import ConfigError, DataError, RankerUnavailable

if TYPE_CHECKING:
    import numpy as np

    from harness.runner import Runner

PAIRS_VERSION = 1


@dataclass(frozen=True)
class Pairs:
    chain: str                # the ranker whose ranking gave the pairs
    dataset: str
    scores: "np.ndarray"
    labels: "np.ndarray"
    qids: tuple[str, ...]     # one per pair
    queries: int
    source: str               # "cached run" | "ranked live"

    @property
    def positives(self) -> int:
        return int(self.labels.sum())


def scorer_identity(runner: "Runner", chain: str) -> dict:
    """What a calibrator belongs to: the chain's own ranker (its model), not its first stage."""
    ds = None
    inst = runner.instance(chain)
    inst.resolve_models()
    inputs = inst.fingerprint_inputs(ds)
    return {"scorer": inputs}


def scorer_key(runner: "Runner", chain: str) -> str:
    from harness.cache import fingerprint

    return fingerprint(scorer_identity(runner, chain))


def chain_for(runner: "Runner", chains: Sequence[str], dataset: str) -> str:
    """The first chain that applies to the dataset (a DL set: the one on the published run)."""
    ds = runner.dataset(dataset)
    reasons = []
    for c in chains:
        why = runner.applicability(c, ds)
        if why is None:
            return c
        reasons.append(f"{c}: {why}")
    raise RankerUnavailable(f"no chain of {', '.join(chains)} applies to {dataset}: " + "; ".join(reasons))


def same_scorer(runner: "Runner", chains: Sequence[str], where: str) -> None:
    keys = {c: scorer_key(runner, c) for c in chains}
    if len(set(keys.values())) > 1:
        raise ConfigError(f"{where}: the chains {', '.join(chains)} do not share one scorer (their rerankers "
                          f"load different models or settings), so one calibrator cannot serve them all")


def check_held_out(runner: "Runner", fit_on: str, test_on: str) -> frozenset[str]:
    """The leakage guard for calibration: nothing fitted on the data it is measured on. Refuses
    the same data outright; returns the test queries whose text is also a fit query (NFCorpus's
    dev and test splits share one), which the test pairs then leave out."""
    from training.data import _norm_text

    a, b = runner.dataset(fit_on), runner.dataset(test_on)
    if a.fingerprint() == b.fingerprint():
        raise ConfigError(f"calibration: {fit_on} and {test_on} are the same data; fit on a training or dev split")
    seen = {_norm_text(t) for t in a.queries().values()}
    return frozenset(q for q, t in b.queries().items() if _norm_text(t) in seen)


def sample_queries(queries: dict, max_queries: int, seed: int) -> list[str]:
    qids = sorted(queries)
    if max_queries and len(qids) > max_queries:
        return sorted(random.Random(seed).sample(qids, max_queries))
    return qids


def collect_pairs(runner: "Runner", chain: str, dataset: str, max_queries: int = 0, seed: int | None = None,
                  exclude: frozenset[str] = frozenset()) -> Pairs:
    """The chain's (score, label) pairs on the dataset's judged queries (a seeded sample of them
    when ``max_queries``), from its cached run when there is one, else ranked live now."""
    import numpy as np

    from harness.types import drop_self_hits

    ds = runner.dataset(dataset)
    why = runner.applicability(chain, ds)
    if why is not None:
        raise RankerUnavailable(f"ranker {chain} cannot rank {dataset}: {why}")
    settings = runner.config.settings
    seed = settings.seed if seed is None else seed
    qrels = ds.qrels()
    queries = {q: t for q, t in ds.queries().items() if q in qrels and q not in exclude}
    chosen = sample_queries(queries, max_queries, seed)
    spec = runner.config.ranker(chain)
    k = spec.depth if spec.first_stage else settings.k
    key = runner.run_key(chain, ds, settings.k)
    if runner.cache.get("runs", key) is not None:
        run, _, _ = runner.get_run(chain, ds, settings.k, settings)
        source = "cached run"
    else:
        pipe = runner.pipeline(chain)
        pipe.prepare(ds)
        run = pipe.rank({q: queries[q] for q in chosen}, k)
        source = "ranked live"
    if ds.conventions.drop_self_hits:
        run = drop_self_hits(run)
    level = ds.conventions.rel_level
    scores, labels, qids = [], [], []
    for q in chosen:
        for d, s in run.get(q, {}).items():
            scores.append(float(s))
            labels.append(1.0 if qrels[q].get(d, 0) >= level else 0.0)
            qids.append(q)
    return Pairs(chain, dataset, np.asarray(scores, dtype=np.float64), np.asarray(labels, dtype=np.float64),
                 tuple(qids), len(chosen), source)


def pairs(runner: "Runner", chain: str, dataset: str, max_queries: int = 0,
          exclude: frozenset[str] = frozenset()) -> Pairs:
    """``collect_pairs``, cached by content (the chain's fingerprint on the dataset, the sample)."""
    import numpy as np

    from harness.cache import fingerprint

    ds = runner.dataset(dataset)
    key = fingerprint({"what": "calibration pairs", "version": PAIRS_VERSION,
                       "chain": runner.chain_fingerprint(chain, ds), "dataset": ds.fingerprint(),
                       "max_queries": max_queries, "seed": runner.config.settings.seed,
                       **({"exclude": sorted(exclude)} if exclude else {})})

    def build(folder):
        got = collect_pairs(runner, chain, dataset, max_queries, exclude=exclude)
        np.savez_compressed(folder / "pairs.npz", scores=got.scores, labels=got.labels,
                            qids=np.asarray(got.qids, dtype=str))
        (folder / "pairs.json").write_text(json.dumps({"chain": chain, "dataset": dataset, "queries": got.queries,
                                                       "source": got.source}), encoding="utf-8")

    folder, _ = runner.cache.artifact("calibration-pairs", key, {"what": "calibration pairs", "ranker": chain,
                                                                 "dataset": dataset}, build)
    try:
        meta = json.loads((folder / "pairs.json").read_text(encoding="utf-8"))
        with np.load(folder / "pairs.npz") as z:
            return Pairs(chain, dataset, z["scores"], z["labels"], tuple(str(q) for q in z["qids"]),
                         int(meta["queries"]), str(meta["source"]))
    except (OSError, ValueError, KeyError) as e:
        runner.cache.quarantine("calibration-pairs", key, f"calibration pairs of {chain} on {dataset}: {e}")
        raise DataError(f"the cached calibration pairs of {chain} on {dataset} could not be read ({e}); "
                        f"run the same command again to collect them anew") from None


def calibrators(runner: "Runner", chain: str, dataset: str, max_queries: int = 0,
                methods: Sequence[str] = METHODS) -> tuple[dict[str, Calibrator], Pairs]:
    """The chain's scorer's calibrators fitted on its pairs of ``dataset`` (fitting takes
    milliseconds; the pairs are what is cached)."""
    got = pairs(runner, chain, dataset, max_queries)
    fit_on = f"{dataset}: {got.queries} queries, {got.scores.size} pairs via {chain}"
    return {m: fit(m, got.scores, got.labels, fit_on=fit_on) for m in methods}, got


def calibrator_for(runner: "Runner", ranker: str, method: str, dataset: str, max_queries: int = 0) -> Calibrator:
    """One calibrator for the ranker's scorer, fitted on ``dataset`` through the ranker's chain, or
    through another chain of bench.toml with the same scorer where the ranker's own cannot rank
    that dataset (a BEIR chain calibrated on DL through the chain on the published run)."""
    if method not in METHODS:
        raise ConfigError(f"calibrator method {method!r}: choose one of {', '.join(METHODS)}")
    ds = runner.dataset(dataset)
    chain = ranker
    if runner.applicability(ranker, ds) is not None:
        mine = scorer_key(runner, ranker)
        twins = [name for name, spec in runner.config.rankers.items()
                 if name != ranker and spec.kind == runner.config.ranker(ranker).kind
                 and runner.applicability(name, ds) is None and _safe_key(runner, name) == mine]
        if not twins:
            raise RankerUnavailable(f"ranker {ranker} cannot rank {dataset} "
                                    f"({runner.applicability(ranker, ds)}), and no other ranker of "
                                    f"bench.toml with the same model can: calibrate on another dataset")
        chain = sorted(twins)[0]
    return calibrators(runner, chain, dataset, max_queries, methods=(method,))[0][method]


def _safe_key(runner: "Runner", name: str) -> str | None:
    from harness.errors import RankbenchError

    try:
        return scorer_key(runner, name)
    except RankbenchError:        # a ranker whose model cannot be had here is no twin
        return None
