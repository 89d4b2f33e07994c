"""Score calibration: a ranker's raw scores mapped to the probability that a passage is relevant.

Four calibrators, fitted with scikit-learn and scipy on (raw score, relevant?) pairs:

- ``identity``: the sigmoid of the raw score, nothing fitted (what TEI and infinity serve);
- ``temperature``: sigmoid(s / T), one parameter, T > 0;
- ``platt``: sigmoid(a * s + b), logistic regression on the score, a > 0 required;
- ``isotonic``: scikit-learn's IsotonicRegression, kept within [0.001, 0.999] (a step of judged
  pairs never makes a score certain), with a ten-thousandth of the Platt logit added on the logit
  scale so that it is strictly increasing (isotonic steps would otherwise tie distinct scores and
  so reorder tied passages; the shift moves a probability by under 0.05%).

Every calibrator is strictly increasing, so it never changes a ranking (the tests check nDCG@10
is unchanged); per-query min-max scaling, which breaks thresholds, is not offered. Measures:
expected calibration error with equal-width and equal-mass bins, maximum calibration error,
Brier score and negative log-likelihood.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Sequence

from .errors import ConfigError, DataError

if TYPE_CHECKING:
    import numpy as np

METHODS = ("identity", "temperature", "platt", "isotonic")
MIN_PAIRS = 200              # fewer pairs than this: no calibrator is fitted
MIN_POSITIVES = 20           # nor with fewer relevant (or non-relevant) pairs than this
ISOTONIC_MIN_PAIRS = 1000    # scikit-learn's advice: isotonic regression overfits below about this
BLEND = 1e-4                 # the share of the Platt logit added to isotonic's, for strict monotonicity
ISOTONIC_RANGE = (1e-3, 1 - 1e-3)
EPS = 1e-12


def _sigmoid(x):
    import numpy as np

    x = np.asarray(x, dtype=np.float64)
    return np.where(x >= 0, 1 / (1 + np.exp(-np.abs(x))), np.exp(-np.abs(x)) / (1 + np.exp(-np.abs(x))))


@dataclass(frozen=True)
class Calibrator:
    method: str
    params: dict                       # temperature: {t}; platt: {a, b}; isotonic: {x, y, a, b}
    n: int = 0                         # pairs it was fitted on
    positives: int = 0
    fit_on: str = ""                   # what the pairs came from (dataset, ranker)
    notes: tuple[str, ...] = field(default=())

    @property
    def name(self) -> str:
        return f"{self.method}" + (f" ({self.fit_on})" if self.fit_on else "")

    def transform(self, scores) -> "np.ndarray":
        import numpy as np

        s = np.asarray(scores, dtype=np.float64)
        p = self.params
        if self.method == "identity":
            return _sigmoid(s)
        if self.method == "temperature":
            return _sigmoid(s / p["t"])
        if self.method == "platt":
            return _sigmoid(p["a"] * s + p["b"])
        if self.method == "isotonic":
            iso = np.clip(np.interp(s, p["x"], p["y"]), *ISOTONIC_RANGE)
            return _sigmoid(np.log(iso / (1 - iso)) + BLEND * (p["a"] * s + p["b"]))
        raise ConfigError(f"calibrator method {self.method!r}: not one of {', '.join(METHODS)}")

    def __call__(self, score: float) -> float:
        return float(self.transform([score])[0])

    def as_json(self) -> dict:
        d = asdict(self)
        d["notes"] = list(self.notes)
        return d

    @classmethod
    def from_json(cls, d: dict) -> "Calibrator":
        try:
            c = cls(method=d["method"], params=dict(d["params"]), n=int(d.get("n", 0)),
                    positives=int(d.get("positives", 0)), fit_on=str(d.get("fit_on", "")),
                    notes=tuple(d.get("notes", ())))
        except (KeyError, TypeError, ValueError) as e:
            raise DataError(f"a stored calibrator is malformed ({e}): fit it again") from None
        if c.method not in METHODS:
            raise DataError(f"a stored calibrator has method {c.method!r}, not one of {', '.join(METHODS)}")
        return c


def _arrays(scores, labels, what: str):
    import numpy as np

    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels, dtype=np.float64).ravel()
    if s.shape != y.shape:
        raise DataError(f"{what}: {s.size} scores but {y.size} labels")
    if not np.all(np.isfinite(s)):
        raise DataError(f"{what}: {int((~np.isfinite(s)).sum())} scores are not finite")
    if not np.all((y == 0) | (y == 1)):
        raise DataError(f"{what}: labels must be 0 or 1")
    return s, y


def check_sample(scores, labels, what: str = "calibration pairs", min_pairs: int = MIN_PAIRS,
                 min_positives: int = MIN_POSITIVES) -> None:
    """The sample-size guard: enough pairs, and enough of each label, to fit anything."""
    s, y = _arrays(scores, labels, what)
    pos = int(y.sum())
    if s.size < min_pairs:
        raise DataError(f"{what}: {s.size} pairs; at least {min_pairs} are needed to fit a calibrator")
    if pos < min_positives or s.size - pos < min_positives:
        raise DataError(f"{what}: {pos} relevant and {s.size - pos} non-relevant pairs; at least "
                        f"{min_positives} of each are needed to fit a calibrator")


def fit(method: str, scores, labels, fit_on: str = "", min_pairs: int = MIN_PAIRS,
        min_positives: int = MIN_POSITIVES) -> Calibrator:
    """Fit one calibrator on (raw score, 0/1 label) pairs, after the sample-size guard."""
    import numpy as np

    if method not in METHODS:
        raise ConfigError(f"calibrator method {method!r}: choose one of {', '.join(METHODS)}")
    what = f"calibration pairs{' of ' + fit_on if fit_on else ''}"
    s, y = _arrays(scores, labels, what)
    check_sample(s, y, what, min_pairs, min_positives)
    n, pos = int(s.size), int(y.sum())
    if method == "identity":
        return Calibrator("identity", {}, n, pos, fit_on)
    if method == "temperature":
        from scipy.optimize import minimize_scalar

        def nll(log_t):
            p = np.clip(_sigmoid(s / math.exp(log_t)), EPS, 1 - EPS)
            return -float(np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))

        best = minimize_scalar(nll, bounds=(-7.0, 7.0), method="bounded")
        return Calibrator("temperature", {"t": float(math.exp(best.x))}, n, pos, fit_on)
    a, b = _platt(s, y, what)
    if method == "platt":
        return Calibrator("platt", {"a": a, "b": b}, n, pos, fit_on)
    from sklearn.isotonic import IsotonicRegression

    iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0, increasing=True).fit(s, y)
    notes = ((f"fitted on {n} pairs, under the {ISOTONIC_MIN_PAIRS} below which isotonic regression "
              f"tends to overfit"),) if n < ISOTONIC_MIN_PAIRS else ()
    return Calibrator("isotonic", {"x": [float(v) for v in iso.X_thresholds_],
                                   "y": [float(v) for v in iso.y_thresholds_], "a": a, "b": b},
                      n, pos, fit_on, notes)


def _platt(s, y, what: str) -> tuple[float, float]:
    from sklearn.linear_model import LogisticRegression

    lr = LogisticRegression(C=1e6, max_iter=1000).fit(s.reshape(-1, 1), y.astype(int))
    a, b = float(lr.coef_[0][0]), float(lr.intercept_[0])
    if not a > 0:
        raise DataError(f"{what}: higher scores are not more often relevant (Platt slope {a:.4g}); "
                        f"a calibrator that keeps the ranking cannot be fitted")
    return a, b


def fit_all(scores, labels, fit_on: str = "", methods: Sequence[str] = METHODS) -> dict[str, Calibrator]:
    return {m: fit(m, scores, labels, fit_on) for m in methods}


# -- measures ------------------------------------------------------------------------------------

def _bins(p, y, n_bins: int, strategy: str):
    import numpy as np

    if strategy == "width":
        edges = np.linspace(0.0, 1.0, n_bins + 1)
        idx = np.clip(np.digitize(p, edges[1:-1], right=False), 0, n_bins - 1)
        groups = [np.flatnonzero(idx == b) for b in range(n_bins)]
    else:     # equal mass: sorted by probability, cut into n_bins groups of (nearly) equal size
        order = np.argsort(p, kind="stable")
        groups = [g for g in np.array_split(order, n_bins) if g.size]
    return [(float(p[g].mean()), float(y[g].mean()), int(g.size)) for g in groups if g.size]


def measures(probs, labels, n_bins: int = 15) -> dict:
    """ECE (equal-width and equal-mass bins), MCE, Brier, NLL, and the base rates."""
    import numpy as np

    p, y = _arrays(probs, labels, "calibration measures")
    if p.size == 0:
        raise DataError("calibration measures: no pairs")
    if np.any((p < 0) | (p > 1)):
        raise DataError("calibration measures: probabilities must lie in [0, 1]")
    width = _bins(p, y, n_bins, "width")
    mass = _bins(p, y, n_bins, "mass")
    n = p.size

    def ece(bins):
        return float(sum(c / n * abs(conf - acc) for conf, acc, c in bins))

    q = np.clip(p, EPS, 1 - EPS)
    return {"n": int(n), "positives": int(y.sum()), "positive_rate": float(y.mean()),
            "mean_probability": float(p.mean()), "ece_width": ece(width), "ece_mass": ece(mass),
            "mce": float(max(abs(conf - acc) for conf, acc, _ in width)),
            "brier": float(np.mean((p - y) ** 2)),
            "nll": float(-np.mean(y * np.log(q) + (1 - y) * np.log(1 - q))), "bins": n_bins}


def reliability(probs, labels, n_bins: int = 15) -> list[tuple[float, float, int]]:
    """(mean probability, share relevant, pairs) per equal-width bin: a reliability diagram's points."""
    p, y = _arrays(probs, labels, "reliability")
    return _bins(p, y, n_bins, "width")


def threshold_for_precision(probs, labels, target: float) -> dict:
    """The lowest threshold whose kept pairs (probability >= threshold) reach ``target`` precision
    on these pairs, with the precision and recall it gives; None when no threshold reaches it."""
    import numpy as np

    if not 0 < target <= 1:
        raise ConfigError(f"target precision: in (0, 1], found {target!r}")
    p, y = _arrays(probs, labels, "threshold pairs")
    order = np.argsort(-p, kind="stable")
    ps, ys = p[order], y[order]
    tp = np.cumsum(ys)
    kept = np.arange(1, ps.size + 1)
    prec = tp / kept
    total = max(ys.sum(), 1)
    # candidate cut after each distinct probability (ties are kept or dropped together)
    last = np.r_[ps[1:] != ps[:-1], True]
    ok = np.flatnonzero(last & (prec >= target))
    if ok.size == 0:
        return {"threshold": None, "target": target, "precision": None, "recall": 0.0, "kept": 0}
    i = ok[-1]          # the deepest cut still at the target: the lowest threshold
    return {"threshold": float(ps[i]), "target": target, "precision": float(prec[i]),
            "recall": float(tp[i] / total), "kept": int(kept[i])}
