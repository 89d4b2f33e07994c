"""The judgements every table makes, in one place: a published figure reproduced or not, a
result against its accepted baseline, a latency against its baseline, wins/ties/losses over
queries, and the order in which tied documents are shown. ``report``, ``check``, ``compare`` and
``significance`` all ask here, so a leaderboard, a CI check and a comparison never disagree."""
from __future__ import annotations

from typing import Iterable, Mapping

EXACT = 5e-7          # below this, two measures are the same figure (float noise of the evaluators)
FLOAT_SLACK = 1e-12   # a published figure exactly at its tolerance still reproduces


def published_verdict(measured: float | None, published: float, tolerance: float) -> str:
    """OK when the measured figure is within the tolerance of the published one, FAIL otherwise
    (and when there is no measured figure)."""
    if measured is None:
        return "FAIL"
    return "OK" if abs(measured - published) <= tolerance + FLOAT_SLACK else "FAIL"


def effectiveness_verdict(current: float, baseline: float, tolerance: float) -> str:
    """OK: the baseline's figure; OKISH: within the tolerance, or better (accept it to move the
    baseline); FAIL: worse by more than the tolerance."""
    delta = current - baseline
    if abs(delta) <= EXACT:
        return "OK"
    if delta > 0 or delta >= -tolerance:
        return "OKISH"
    return "FAIL"


def latency_verdict(current: float, baseline: float, tolerance: float, slack_ms: float = 0.0) -> str:
    """OK when no slower; OKISH within the relative tolerance plus the absolute slack (so timer
    and scheduler noise on a sub-millisecond median never fails); FAIL beyond both."""
    if current <= baseline:
        return "OK"
    if current <= baseline * (1 + tolerance) + slack_ms:
        return "OKISH"
    return "FAIL"


def win_tie_loss(a: Mapping[str, float], b: Mapping[str, float], qids: Iterable[str] | None = None) -> tuple[int, int, int]:
    """Queries where ``a`` scores above ``b``, the same, and below (over ``qids``, default all of a's)."""
    qids = list(a) if qids is None else list(qids)
    wins = sum(a[q] > b[q] for q in qids)
    ties = sum(a[q] == b[q] for q in qids)
    return wins, ties, len(qids) - wins - ties


def trec_eval_order(scores: Mapping[str, float]) -> list[str]:
    """Doc ids in the order trec_eval (and so ir_measures) ranks them: score descending, ties by
    doc id descending. What a table that shows a ranking as evaluated must use.

    Cutting a run to depth k is another matter: ``harness.types.ranked`` breaks ties by doc id
    ascending, which decides which tied documents a cut run keeps (and so every cached run); it
    is kept as it is so that every figure stays the same. ir_measures computes RR with its MS
    MARCO evaluator, which orders tied documents by ascending id: RR@k is the one measure whose
    ties do not follow this order (tests/test_report_check.py keeps watch)."""
    by_id = sorted(scores.items(), reverse=True)
    return [d for d, _ in sorted(by_id, key=lambda kv: -kv[1])]     # stable: ties keep that order
