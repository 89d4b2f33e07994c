"""Significance over queries: paired tests, Holm-Bonferroni, win / tie / loss.

Two paired two-sided tests over the per-query values of two rankers on the same queries:

- ``t-test``: Student's paired t-test (scipy's ``ttest_rel``).
- ``randomization``: the paired randomization (sign-flip permutation) test IR uses since Smucker,
  Allan and Carterette (CIKM 2007): under the null hypothesis each query's difference is as likely
  to have either sign, so the p-value is the share of sign assignments whose mean difference is at
  least as far from zero as the observed one. Exact (all 2^n assignments) when 2^n is at most the
  number of permutations asked for, else that many random assignments from a seeded generator,
  with the +1 correction that keeps a Monte Carlo p-value valid (never 0). The same assignments
  are used for every pair of a table, so the report is a pure function of its inputs.

Holm-Bonferroni runs over the comparisons actually made. Against a baseline that means the
other rankers only: the baseline is never compared with itself, so it never adds a p-value (or
a NaN) to the family. PyTerrier once did pass the baseline's NaN in and got wrong corrections.

Two rankers with identical per-query values have no variance to test: p = 1 (no evidence of a
difference), and the comparison still counts in the correction's family, as it was made.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Mapping, Sequence

from .verdicts import win_tie_loss

if TYPE_CHECKING:
    import numpy as np

TESTS = ("t-test", "randomization")
TEST_NAMES = {"t-test": "paired t-test",
              "randomization": "paired randomization test"}


def _paired(a: Mapping[str, float], b: Mapping[str, float], where: str = "") -> tuple[list[str], list[float], list[float]]:
    """The two rankers' values over the same queries. A query one ranker lacks is an error:
    results are evaluated over all of a dataset's judged queries (missing answers score 0), so a
    mismatch means the inputs do not belong together."""
    if set(a) != set(b):
        only_a, only_b = sorted(set(a) - set(b)), sorted(set(b) - set(a))
        raise ValueError(f"{where or 'paired test'}: the two rankers were evaluated on different queries "
                         f"({len(only_a)} only in the first, e.g. {only_a[:3]}; {len(only_b)} only in the "
                         f"second, e.g. {only_b[:3]})")
    if not a:
        raise ValueError(f"{where or 'paired test'}: no queries to compare")
    qids = sorted(a)
    return qids, [float(a[q]) for q in qids], [float(b[q]) for q in qids]


def t_test(x: Sequence[float], y: Sequence[float]) -> float:
    """Two-sided p-value of the paired t-test of x against y (same order)."""
    import numpy as np
    from scipy import stats

    d = np.asarray(x, dtype=float) - np.asarray(y, dtype=float)
    if len(d) < 2 or not np.any(d != d[0]):
        # no variance: identical rankers (p = 1), or a constant non-zero difference, which
        # scipy calls infinitely significant; with a single query nothing can be tested
        return 1.0 if len(d) < 2 or d[0] == 0 else 0.0
    return float(stats.ttest_rel(x, y).pvalue)


class SignFlips:
    """The sign assignments of the randomization test, for n queries: all 2^n of them when that
    is no more than ``permutations``, else ``permutations`` random ones (seeded)."""

    def __init__(self, n: int, permutations: int = 10_000, seed: int = 42):
        import numpy as np

        if n < 1:
            raise ValueError("the randomization test needs at least one query")
        if permutations < 100:
            raise ValueError(f"permutations = {permutations}: use at least 100 (10,000 is usual)")
        self.n = n
        self.exact = n < 63 and 2 ** n <= permutations
        if self.exact:
            codes = np.arange(2 ** n, dtype=np.int64)[:, None]
            bits = (codes >> np.arange(n, dtype=np.int64)[None, :]) & 1
            self.signs = (1 - 2 * bits).astype(np.float64)      # every assignment once
        else:
            rng = np.random.default_rng(seed)
            self.signs = rng.choice(np.array([-1.0, 1.0]), size=(permutations, n))
        self.count = len(self.signs)

    def p_values(self, diffs) -> "np.ndarray":
        """Two-sided p-values for a (n,) or (n, pairs) array of per-query differences."""
        import numpy as np

        d = np.asarray(diffs, dtype=np.float64)
        single = d.ndim == 1
        d = d.reshape(self.n, -1)
        observed = np.abs(d.mean(axis=0))
        null = np.abs(self.signs @ d) / self.n                  # (assignments, pairs)
        # a relative tolerance, as scipy's permutation_test uses, so float noise in sums of the
        # same values in another order does not decide a tie
        tol = 100 * np.finfo(np.float64).eps * observed
        hits = (null >= observed - tol).sum(axis=0)
        if self.exact:
            p = hits / self.count
        else:
            p = (hits + 1) / (self.count + 1)
        p = np.where(np.all(d == 0, axis=0), 1.0, np.minimum(p, 1.0))
        return float(p[0]) if single else p


def randomization_test(x: Sequence[float], y: Sequence[float], permutations: int = 10_000, seed: int = 42) -> float:
    """Two-sided p-value of the paired randomization test of x against y (same order)."""
    import numpy as np

    d = np.asarray(x, dtype=float) - np.asarray(y, dtype=float)
    return SignFlips(len(d), permutations, seed).p_values(d)


def holm(pvalues: Mapping) -> dict:
    """Holm-Bonferroni adjusted p-values (step-down, made monotone), keyed as given. NaN is refused:
    a comparison that could not be made has no place in the family."""
    for key, p in pvalues.items():
        if p is None or math.isnan(p) or not 0 <= p <= 1:
            raise ValueError(f"Holm correction: p-value of {key!r} is {p!r}; leave comparisons that were not "
                             f"made out of the family")
    items = sorted(pvalues.items(), key=lambda kv: kv[1])
    m = len(items)
    out, running = {}, 0.0
    for i, (key, p) in enumerate(items):
        running = max(running, min(1.0, (m - i) * p))
        out[key] = running
    return out


@dataclass(frozen=True)
class Comparison:
    """One ranker against another on one measure, over the same queries."""

    delta: float          # mean(ranker) - mean(other)
    p: float              # raw two-sided p-value
    p_holm: float         # Holm-adjusted within its family
    wins: int             # queries where the ranker scores above the other
    ties: int
    losses: int

    def significant(self, alpha: float) -> bool:
        return self.p_holm < alpha


class Tester:
    """Runs the configured test. ``test`` is "t-test" or "randomization"."""

    def __init__(self, test: str = "t-test", permutations: int = 10_000, seed: int = 42):
        if test not in TESTS:
            raise ValueError(f"significance test {test!r}: use one of {', '.join(TESTS)}")
        self.test, self.permutations, self.seed = test, permutations, seed
        self._flips: dict[int, SignFlips] = {}

    @property
    def name(self) -> str:
        if self.test == "randomization":
            return f"{TEST_NAMES[self.test]}, {self.permutations:,} sign flips"
        return TEST_NAMES[self.test]

    def p_values(self, pairs: Mapping[object, tuple[Sequence[float], Sequence[float]]]) -> dict:
        """Raw p-values for several (x, y) pairs over the same number of queries each."""
        import numpy as np

        if self.test == "t-test":
            return {k: t_test(x, y) for k, (x, y) in pairs.items()}
        out = {}
        by_n: dict[int, list] = {}
        for k, (x, y) in pairs.items():
            by_n.setdefault(len(x), []).append(k)
        for n, keys in by_n.items():
            flips = self._flips.get(n) or self._flips.setdefault(n, SignFlips(n, self.permutations, self.seed))
            d = np.stack([np.asarray(pairs[k][0], float) - np.asarray(pairs[k][1], float) for k in keys], axis=1)
            for k, p in zip(keys, flips.p_values(d)):
                out[k] = float(p)
        return out

    def against_baseline(self, per_query: Mapping[str, Mapping[str, float]], baseline: str) -> dict[str, Comparison]:
        """Every other ranker against the baseline on one measure, Holm-corrected across those
        rankers (the baseline itself is not a comparison)."""
        if baseline not in per_query:
            raise ValueError(f"baseline {baseline!r} has no per-query values here")
        pairs, counts, deltas = {}, {}, {}
        for r, values in per_query.items():
            if r == baseline:
                continue
            qids, x, y = _paired(values, per_query[baseline], f"{r} against {baseline}")
            pairs[r] = (x, y)
            counts[r] = win_tie_loss(values, per_query[baseline], qids)
            deltas[r] = (sum(x) - sum(y)) / len(x)
        raw = self.p_values(pairs)
        adjusted = holm(raw)
        return {r: Comparison(deltas[r], raw[r], adjusted[r], *counts[r]) for r in pairs}

    def all_pairs(self, per_query: Mapping[str, Mapping[str, float]], alpha: float) -> dict[str, set[str]]:
        """For each ranker, the rankers it beats significantly: every pair tested, Holm-corrected
        across all pairs. The letters of a leaderboard."""
        names = list(per_query)
        pairs = {}
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                _, x, y = _paired(per_query[a], per_query[b], f"{a} against {b}")
                pairs[(a, b)] = (x, y)
        adjusted = holm(self.p_values(pairs))
        wins: dict[str, set[str]] = {n: set() for n in names}
        for (a, b), p in adjusted.items():
            if p < alpha:
                x, y = pairs[(a, b)]
                if sum(x) > sum(y):
                    wins[a].add(b)
                elif sum(y) > sum(x):
                    wins[b].add(a)
        return wins
