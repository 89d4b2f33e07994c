"""Evaluation through ir_measures: every measure is an ir_measures object keyed by its string.

trec_eval ``-c`` semantics: the mean is over every query of the qrels, and a query the run does
not answer scores 0. Per-query values are kept for significance tests.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping

from .errors import ConfigError
from .types import Qrels


def parse_measures(names: Iterable[str], where: str = "") -> list:
    """ir_measures objects for measure strings; a bad string is an error naming it and where."""
    import ir_measures

    out = []
    for name in names:
        if not isinstance(name, str):
            raise ConfigError(f"{where}: a measure must be a string like \"nDCG@10\", found {name!r}")
        try:
            m = ir_measures.parse_measure(name)
        except (ValueError, NameError, TypeError, AttributeError) as e:
            from .errors import did_you_mean

            base = name.split("@")[0].split("(")[0]
            hint = did_you_mean(base, ir_measures.measures.registry)
            raise ConfigError(f"{where}: cannot parse measure {name!r}: {e}{hint}. Use ir_measures "
                              f"syntax, e.g. nDCG@10, RR(rel=2)@10, AP(rel=2)@1000, P@10, Success@10") from None
        if str(m) != name:
            raise ConfigError(f"{where}: write measure {name!r} as ir_measures prints it: {str(m)!r}")
        out.append(m)
    return out


@dataclass(frozen=True)
class Evaluation:
    aggregate: dict[str, float]               # measure -> mean over all judged queries
    per_query: dict[str, dict[str, float]]    # measure -> qid -> value


def evaluate(run: Mapping[str, Mapping[str, float]], qrels: Qrels, measures: Iterable[str]) -> Evaluation:
    import ir_measures

    names = list(measures)
    parsed = parse_measures(names)
    evaluator = ir_measures.evaluator(parsed, qrels)
    run = {q: dict(d) for q, d in run.items() if q in qrels}
    per_query: dict[str, dict[str, float]] = {n: {} for n in names}
    for metric in evaluator.iter_calc(run):
        per_query[str(metric.measure)][metric.query_id] = float(metric.value)
    # -c: every judged query counts; ir_measures already gives 0 to unanswered ones, and this
    # fills any gap so the mean is always over the whole qrels.
    for n in names:
        for qid in qrels:
            per_query[n].setdefault(qid, 0.0)
    aggregate = {str(m): float(v) for m, v in evaluator.calc_aggregate(run).items()}
    return Evaluation({n: aggregate[n] for n in names},
                      {n: dict(sorted(per_query[n].items())) for n in names})
