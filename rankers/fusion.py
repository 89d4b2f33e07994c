"""Score fusion: a weighted sum of other rankers' per-query normalised scores (CombSUM), or
reciprocal rank fusion.

As a retriever (no first_stage) it fuses its members' runs, each member a whole chain from
bench.toml; in a benchmark the members' cached runs are fused, so fusing costs nothing new, and the
time reported is the members' own; a query the dataset does not have (``Pipeline.search``) is ranked
live by every member. Given candidates (a first_stage, or a recipe asking a fused teacher for
scores on training candidates) each member's final stage scores those candidates.

    [rankers.teacher]
    kind = "fusion"
    members = { ce-rerank-bm25 = 1.0, minilm-rerank-bm25 = 1.0 }
    normalize = "zscore"        # zscore | minmax | rrf
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Mapping

from harness.errors import ConfigError, RankerUnavailable
from harness.params import ranged
from harness.types import Run, ranked

from .base import Footprint, Ranker


@dataclass(frozen=True)
class FusionParams:
    members: dict[str, float] = ranged(factory=dict, ge=0)   # ranker name -> weight
    normalize: Literal["zscore", "minmax", "rrf"] = "zscore"
    rrf_k: int = ranged(60, ge=0)


def normalise(scores: Mapping[str, float], how: str, rrf_k: int = 60) -> dict[str, float]:
    """One query's scores on a common scale."""
    if not scores:
        return {}
    if how == "rrf":
        return {d: 1.0 / (rrf_k + i) for i, (d, _) in enumerate(ranked(scores), 1)}
    values = list(scores.values())
    if how == "minmax":
        lo, hi = min(values), max(values)
        return {d: (s - lo) / (hi - lo) if hi > lo else 0.0 for d, s in scores.items()}
    mean = sum(values) / len(values)
    std = (sum((v - mean) ** 2 for v in values) / len(values)) ** 0.5
    return {d: (s - mean) / std if std > 0 else 0.0 for d, s in scores.items()}


def fuse(runs: Mapping[str, Run], weights: Mapping[str, float], how: str, k: int, rrf_k: int = 60) -> Run:
    """Weighted sum of normalised scores per query. A document missing from a member's list takes
    that member's lowest normalised score for the query (0 under rrf): it ranked below them all."""
    qids = dict.fromkeys(q for run in runs.values() for q in run)
    out: Run = {}
    for qid in qids:
        total: dict[str, float] = {}
        per_member = []
        for name, run in runs.items():
            norm = normalise(run.get(qid, {}), how, rrf_k)
            floor = 0.0 if how == "rrf" or not norm else min(norm.values())
            per_member.append((weights[name], norm, floor))
            for d in norm:
                total.setdefault(d, 0.0)
        for w, norm, floor in per_member:
            for d in total:
                total[d] += w * norm.get(d, floor)
        out[qid] = dict(ranked(total)[:k])
    return out


class Fusion(Ranker):
    kind = "fusion"
    Params = FusionParams
    reranks = True
    reranks_texts = True         # when every member does (serving checks the members)

    @classmethod
    def references(cls, params: FusionParams, where: str) -> tuple[str, ...]:
        if not params.members:
            raise ConfigError(f"{where}: members must name at least one ranker, with its weight")
        for name, w in params.members.items():
            if w <= 0:
                raise ConfigError(f"{where}: members.{name} weight must be > 0, found {w}")
        if params.rrf_k < 1:
            raise ConfigError(f"{where}: rrf_k must be >= 1, found {params.rrf_k}")
        return tuple(params.members)

    def applies_to(self, dataset, reranking: bool) -> str | None:
        """A fusion applies wherever its members do (the runner checks them), reranking sets included:
        as a retriever it only fuses the members' runs."""
        return None

    def _rankers(self):
        rankers = self.ctx.rankers
        if rankers is None:
            raise RankerUnavailable(f"ranker {self.name}: a fusion reaches its members through the config's "
                                    f"rankers (Context.rankers): build it with harness.pipeline.RankerSet")
        return rankers

    def fingerprint_inputs(self, dataset) -> dict:
        base = super().fingerprint_inputs(dataset)
        rankers = self._rankers()
        base["members"] = {m: rankers.chain_fingerprint(m, dataset) for m in self.params.members}
        return base

    def prepare(self, dataset, reranking=False):
        super().prepare(dataset, reranking)
        self._stats: dict = {}

    def rank(self, queries: Mapping[str, str], candidates: Run | None, k: int) -> Run:
        rankers = self._rankers()
        runs: dict[str, Run] = {}
        costs: dict[str, dict] = {}
        for name in self.params.members:
            if candidates is None:
                runs[name], costs[name] = rankers.member_run(name, self.dataset, queries, k)
            else:
                runs[name], costs[name] = rankers.member_rerank(name, self.dataset, queries, candidates)
        self._stats = self._cost(costs, len(queries))
        fused = fuse(runs, self.params.members, self.params.normalize, k, self.params.rrf_k)
        return {qid: fused.get(qid, {}) for qid in queries}

    def _cost(self, costs: dict[str, dict], n: int) -> dict:
        """What fusing cost: each member's own ranking stage, and the first stages they share once."""
        stage = sum(0.0 if c.get("precomputed") else c["rank_s"] for c in costs.values())
        firsts = {c["first_stage"]["ranker"]: (0.0 if c["first_stage"]["precomputed"] else c["first_stage"]["rank_s"])
                  for c in costs.values() if c.get("first_stage")}
        pipeline = stage + sum(firsts.values())
        pairs = max((c.get("pairs", 0) for c in costs.values()), default=0)
        stats = {"rank_s": round(stage, 4),
                 "fusion": {"normalize": self.params.normalize,
                            "members": {m: {"weight": self.params.members[m], "rank_s": round(c["rank_s"], 4)}
                                        for m, c in costs.items()}}}
        if firsts:
            stats.update(pipeline_rank_s=round(pipeline, 4),
                         pipeline_qps=round(n / pipeline, 3) if pipeline > 0 else None)
        if pairs and stage > 0:
            stats.update(pairs=pairs, pairs_per_s=round(pairs / stage, 2))
        return stats

    def run_stats(self) -> dict:
        return dict(getattr(self, "_stats", {}))

    def footprint(self) -> Footprint:
        rankers = self._rankers()
        prints = [p for m in self.params.members for p in rankers.footprints(m)]
        devices = sorted({p.device for p in prints})
        return Footprint(index_bytes=sum(p.index_bytes for p in prints),
                         model_bytes=sum(p.model_bytes for p in prints),
                         params=sum(p.params for p in prints),
                         dtype=",".join(sorted({p.dtype for p in prints if p.dtype})) or None,
                         device=",".join(devices) or "cpu")
