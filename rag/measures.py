"""Context measures: what the judged relevant passages make of the context an LLM would read.

For one query, a ranking, the qrels and a token budget B, the context is built exactly as
``RagPipeline`` builds it (threshold, dedupe, packing into B tokens, the first passage over the
budget cut to fit when at least ``min_tokens`` remain). Then, with "relevant" meaning a grade at
the dataset's relevance level or above:

- ``CtxRecall@B``: the query's relevant passages that are in the context, over all of them;
- ``CtxPrecision@B``: the context's passages that are relevant, over its passages (0 if empty);
- ``CtxGain@B``: the graded gain in the context (the sum of the grades of its passages) over the
  best gain any ranking could pack into the same budget (the judged passages, highest grade first,
  shortest first within a grade, packed by the same builder).

No LLM is involved: these measure what the reader is given, not what it answers.
"""
from __future__ import annotations

from typing import Mapping, Sequence

from .context import Candidate, ContextSpec, TokenCounter, build_context

MEASURES = ("CtxRecall", "CtxPrecision", "CtxGain")


def measure_names(budgets: Sequence[int]) -> list[str]:
    return [f"{m}@{b}" for b in budgets for m in MEASURES]


class TokenMemo:
    """A counter that remembers each text's count (a passage is counted once per run, not per budget)."""

    def __init__(self, inner: TokenCounter):
        self.inner = inner
        self.name = inner.name
        self._counts: dict[str, int] = {}

    def count(self, text: str) -> int:
        got = self._counts.get(text)
        if got is None:
            got = self._counts[text] = self.inner.count(text)
        return got

    def cut(self, text: str, n: int) -> str:
        return self.inner.cut(text, n)


def context_values(candidates: Sequence[Candidate], grades: Mapping[str, int], rel_level: int,
                   spec: ContextSpec, tokens: TokenCounter, ideal: Sequence[Candidate], ctx=None) -> dict[str, float]:
    """The three measures for one query at ``spec.budget``; ``ideal`` are the judged passages in
    the best order (see ``ideal_candidates``); ``ctx``: the context already built, if it was."""
    if ctx is None:
        ctx = build_context(candidates, spec, tokens)
    relevant = {d for d, g in grades.items() if g >= rel_level}
    got = [p.doc_id for p in ctx.passages]
    hits = sum(1 for d in got if d in relevant)
    gain = sum(max(grades.get(d, 0), 0) for d in got)
    best = build_context(ideal, ContextSpec(budget=spec.budget, dedupe=False, overflow=spec.overflow,
                                            min_tokens=spec.min_tokens, template=spec.template), tokens)
    best_gain = sum(max(grades.get(p.doc_id, 0), 0) for p in best.passages)
    b = spec.budget
    return {f"CtxRecall@{b}": hits / len(relevant) if relevant else 0.0,
            f"CtxPrecision@{b}": hits / len(got) if got else 0.0,
            f"CtxGain@{b}": gain / best_gain if best_gain > 0 else 0.0}


def ideal_candidates(grades: Mapping[str, int], docs: Mapping, tokens: TokenCounter) -> list[Candidate]:
    """The judged passages with a positive grade, highest grade first, then fewest tokens."""
    judged = [(d, g) for d, g in grades.items() if g > 0 and d in docs]
    order = sorted(judged, key=lambda x: (-x[1], tokens.count(docs[x[0]].joined()), x[0]))
    return [Candidate(doc_id=d, text=docs[d].text, title=docs[d].title, score=float(g), rank=i)
            for i, (d, g) in enumerate(order, 1)]
