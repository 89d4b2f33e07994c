"""Significance: rankbench's paired t-test and randomization test against scipy (and ranx, when
installed) on real per-query values: the published DL 2019 and DL 2020 runs shipped in datasets/,
evaluated by the harness; Holm over the baseline's comparisons only; win / tie / loss."""
from __future__ import annotations

import math
from itertools import combinations

import numpy as np
import pytest
from scipy import stats

RUNS = ("bm25", "bm25-rm3", "tas-b", "splade-pp-ed", "openai-ada2", "repllama")


def _per_query(dataset: str, measure: str = "nDCG@10") -> dict[str, dict[str, float]]:
    from harness.config import load_config
    from harness.measures import evaluate
    from harness.runner import Runner

    from conftest import ROOT

    runner = Runner(load_config(ROOT / "bench.toml"), ROOT / "reports", progress=False)
    ds = runner.dataset(dataset)
    qrels = ds.qrels()
    return {name: evaluate(ds.load_run(name), qrels, [measure]).per_query[measure] for name in RUNS}


@pytest.fixture(scope="module")
def dl19() -> dict[str, dict[str, float]]:
    return _per_query("dl19")


@pytest.fixture(scope="module")
def dl20() -> dict[str, dict[str, float]]:
    return _per_query("dl20", "AP(rel=2)@1000")


def _xy(per_query, a, b):
    qids = sorted(per_query[a])
    return np.array([per_query[a][q] for q in qids]), np.array([per_query[b][q] for q in qids])


def _scipy_randomization(x, y, n_resamples):
    return stats.permutation_test((x, y), lambda u, v, axis: np.mean(u - v, axis=axis),
                                  permutation_type="samples", n_resamples=n_resamples, vectorized=True,
                                  rng=np.random.default_rng(7)).pvalue


@pytest.mark.parametrize("fixture", ["dl19", "dl20"])
def test_t_test_equals_scipy_on_every_pair_of_published_runs(request, fixture):
    from harness.significance import Tester, t_test

    per_query = request.getfixturevalue(fixture)
    pairs = {(a, b): _xy(per_query, a, b) for a, b in combinations(RUNS, 2)}
    ours = Tester("t-test").p_values(pairs)
    for (a, b), (x, y) in pairs.items():
        expected = stats.ttest_rel(x, y).pvalue
        assert ours[(a, b)] == pytest.approx(expected, rel=1e-12), (a, b)
        assert t_test(y, x) == pytest.approx(expected, rel=1e-12)          # two-sided: symmetric
    # the published runs differ: real, non-trivial p-values on both sides of 0.05
    assert min(ours.values()) < 1e-3 and max(ours.values()) > 0.05


@pytest.mark.parametrize("n", [9, 12, 14])
def test_exact_randomization_equals_scipy_exactly(dl19, n):
    """With 2^n assignments at most the permutations asked for, both enumerate every sign
    assignment: the p-values must be equal, not close."""
    from harness.significance import SignFlips, randomization_test

    assert SignFlips(n, 2 ** n).exact
    for a, b in [("bm25", "bm25-rm3"), ("bm25", "tas-b"), ("tas-b", "splade-pp-ed")]:
        x, y = _xy(dl19, a, b)
        x, y = x[:n], y[:n]
        assert randomization_test(x, y, permutations=2 ** n) == pytest.approx(
            _scipy_randomization(x, y, 2 ** n), abs=1e-12), (a, b, n)


def test_sampled_randomization_agrees_with_scipy_within_monte_carlo_error(dl19, dl20):
    from harness.significance import Tester

    tester = Tester("randomization", permutations=20_000, seed=3)
    checked = 0
    for per_query in (dl19, dl20):
        pairs = {(a, b): _xy(per_query, a, b) for a, b in combinations(RUNS, 2)}
        ours = tester.p_values(pairs)
        for key, (x, y) in pairs.items():
            theirs = _scipy_randomization(x, y, 20_000)
            # both estimate the same exact p; each has a binomial standard error
            p = max(theirs, ours[key], 1 / 20_000)
            assert abs(ours[key] - theirs) <= 5 * math.sqrt(2 * p * (1 - p) / 20_000) + 2 / 20_000, key
            checked += 1
            if 0.01 < theirs < 0.9:
                assert ours[key] == pytest.approx(stats.ttest_rel(x, y).pvalue, abs=0.1)  # same ballpark
    assert checked == 30


def test_randomization_is_deterministic_and_never_zero(dl19):
    from harness.significance import randomization_test

    x, y = _xy(dl19, "repllama", "bm25")
    p1 = randomization_test(x, y, 5000, seed=1)
    assert p1 == randomization_test(x, y, 5000, seed=1)
    assert p1 == pytest.approx(1 / 5001)        # no assignment beats a 0.23 nDCG gain: the +1 floor
    assert randomization_test(x, x, 5000) == 1.0


def test_against_baseline_corrects_over_the_other_rankers_only(dl19):
    """Holm over the 5 rankers compared with bm25; the baseline itself is never in the family (the
    bug PyTerrier once had: its NaN p-value came along and the correction changed)."""
    from harness.significance import Tester, holm

    tester = Tester("t-test")
    comps = tester.against_baseline(dl19, "bm25")
    assert set(comps) == set(RUNS) - {"bm25"}
    raw = {r: stats.ttest_rel(*_xy(dl19, r, "bm25")).pvalue for r in comps}
    expected = holm(raw)
    for r, c in comps.items():
        assert c.p == pytest.approx(raw[r], rel=1e-12)
        assert c.p_holm == pytest.approx(expected[r], rel=1e-12)
        # Holm with m = 5, not 6: the smallest p is multiplied by 5
    smallest = min(raw, key=raw.get)
    assert comps[smallest].p_holm == pytest.approx(min(1.0, 5 * raw[smallest]))
    with pytest.raises(ValueError, match="leave comparisons that were not made out"):
        holm({**raw, "bm25": float("nan")})


def test_win_tie_loss_counts_each_query_once(dl19):
    from harness.significance import Tester

    comps = Tester().against_baseline(dl19, "bm25")
    base = dl19["bm25"]
    for r, c in comps.items():
        assert c.wins + c.ties + c.losses == len(base) == 43
        assert c.wins == sum(dl19[r][q] > base[q] for q in base)
        assert c.losses == sum(dl19[r][q] < base[q] for q in base)
        assert c.delta == pytest.approx(np.mean([dl19[r][q] - base[q] for q in base]))
    assert comps["repllama"].wins > comps["repllama"].losses      # the strongest published run


def test_mismatched_queries_are_an_error_not_a_silent_zero(dl19):
    from harness.significance import Tester

    cut = {**dl19, "tas-b": dict(list(dl19["tas-b"].items())[:-1])}
    with pytest.raises(ValueError, match="tas-b against bm25: the two rankers were evaluated on different queries"):
        Tester().against_baseline(cut, "bm25")


def test_holm_correction():
    from harness.significance import holm

    adj = holm({"a": 0.01, "b": 0.04, "c": 0.03})
    assert adj == {"a": pytest.approx(0.03), "c": pytest.approx(0.06), "b": pytest.approx(0.06)}


def test_ranx_compare_gives_the_same_p_values(dl19):
    """ranx's compare, on the same qrels and runs: same per-query nDCG@10, the same t-test p-values,
    and randomization p-values within Monte Carlo error."""
    ranx = pytest.importorskip("ranx")
    from harness.config import load_config
    from harness.runner import Runner
    from harness.significance import Tester

    from conftest import ROOT

    ds = Runner(load_config(ROOT / "bench.toml"), ROOT / "reports", progress=False).dataset("dl19")
    qrels = ranx.Qrels({q: dict(v) for q, v in ds.qrels().items()})
    runs = []
    for name in ("bm25", "tas-b", "bm25-rm3"):
        run = ranx.Run({q: dict(v) for q, v in ds.load_run(name).items() if q in ds.qrels()}, name=name)
        runs.append(run)
    t_report = ranx.compare(qrels, runs, ["ndcg@10"], stat_test="student", max_p=0.05)
    f_report = ranx.compare(qrels, runs, ["ndcg@10"], stat_test="fisher", n_permutations=20_000, max_p=0.05)
    for run in runs:      # ranx evaluated the same per-query values as ir_measures did
        theirs = run.scores["ndcg@10"]
        assert {q: pytest.approx(v, abs=1e-9) for q, v in dl19[run.name].items()} == dict(theirs)
    t = Tester("t-test")
    for a, b in combinations(("bm25", "tas-b", "bm25-rm3"), 2):
        x, y = _xy(dl19, a, b)
        ours = t.p_values({0: (x, y)})[0]
        assert t_report.comparisons[a, b]["ndcg@10"]["p_value"] == pytest.approx(ours, rel=1e-9)
        ours_r = Tester("randomization", 20_000).p_values({0: (x, y)})[0]
        p = max(ours_r, 1 / 20_000)
        assert abs(f_report.comparisons[a, b]["ndcg@10"]["p_value"] - ours_r) <= 5 * math.sqrt(2 * p / 20_000) + 2 / 20_000
