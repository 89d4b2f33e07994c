"""``rankbench compare A B --dataset D``: where two rankers differ, query by query, in markdown.

The queries where A and B differ most on a measure, each with its text, both scores and, for each
ranker, the judged documents it ranked highest (rank, grade, opening words). Above them: both
means, the suite's paired test with its p-value, and win / tie / loss counts. Runs come from the
cache (or are computed now, exactly as ``rankbench run SUITE`` would, and cached).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError
from .verdicts import trec_eval_order, win_tie_loss


@dataclass(frozen=True)
class CompareArgs:
    a: str
    b: str
    dataset: str
    suite: str | None = None
    measure: str | None = None
    top: int = 10
    judged: int = 3


def _suite_for(config, a: str, b: str, dataset: str, name: str | None):
    if name is not None:
        suite = config.suite(name)
        for r in (a, b):
            if r not in suite.rankers:
                raise ConfigError(f"compare: suite {name} has no ranker {r} (it has {', '.join(suite.rankers)})")
        if dataset not in suite.datasets:
            raise ConfigError(f"compare: suite {name} does not evaluate {dataset} (it has {', '.join(suite.datasets)})")
        return suite
    for suite in config.suites.values():
        if a in suite.rankers and b in suite.rankers and dataset in suite.datasets:
            return suite
    return None


def compare(config, reports: Path, args: CompareArgs, progress: bool = False) -> str:
    from .measures import evaluate, parse_measures
    from .report import tester
    from .runner import Runner

    for r in (args.a, args.b):
        config.ranker(r)                       # a clear error for an unknown name
    if args.a == args.b:
        raise ConfigError(f"compare: give two different rankers (both are {args.a})")
    if args.top < 1 or args.judged < 1:
        raise ConfigError("compare: --top and --judged must be at least 1")
    suite = _suite_for(config, args.a, args.b, args.dataset, args.suite)
    runner = Runner(config, reports, progress=progress)
    ds = runner.dataset(args.dataset)
    # the suite's settings (what `rankbench run SUITE` caches with), else the global ones; the
    # leakage guard still applies: a trained model is never compared on data it learnt from
    settings = suite.settings if suite is not None else config.settings
    measure = args.measure
    if measure is None:
        measure = (runner.measures_for(suite, args.dataset) if suite is not None
                   else list(ds.conventions.measures))[0]
    parse_measures([measure], "compare --measure")
    for r in (args.a, args.b):
        reason = runner.applicability(r, ds)
        if reason is not None:
            raise ConfigError(f"compare: {r} cannot rank {args.dataset}: {reason}")
        _not_trained_on(runner, r, ds)
    qrels = ds.qrels()
    queries = ds.queries()
    runs, values = {}, {}
    for r in (args.a, args.b):
        run, _, _ = runner.get_run(r, ds, settings.k, settings)
        runs[r] = run
        values[r] = evaluate(run, qrels, [measure]).per_query[measure]
    test = tester(settings)
    va, vb = values[args.a], values[args.b]
    qids = sorted(va)
    p = test.p_values({0: ([va[q] for q in qids], [vb[q] for q in qids])})[0]
    wins, ties, losses = win_tie_loss(va, vb, qids)
    ma, mb = sum(va.values()) / len(va), sum(vb.values()) / len(vb)

    out: list[str] = []
    w = out.append
    w(f"# {args.a} against {args.b} on {args.dataset}\n")
    w(f"{len(qids)} judged queries · {measure}: {args.a} {ma:.4f}, {args.b} {mb:.4f} (Δ {ma - mb:+.4f}) · "
      f"{test.name}: p = {p:.2g} (one comparison, uncorrected) · {args.a} wins {wins}, ties {ties}, "
      f"loses {losses}" + (f" · runs as suite `{suite.name}` runs them" if suite else "") + "\n")
    order = sorted(qids, key=lambda q: (-abs(va[q] - vb[q]), q))
    shown = [q for q in order if va[q] != vb[q]][: args.top]
    if not shown:
        w("The two rankers score every query the same on this measure.\n")
        return "\n".join(out)
    w(f"The {len(shown)} queries where they differ most; under each ranker, the {args.judged} judged "
      f"documents it ranked highest (rank, grade, opening words).\n")
    # each shown query's ranking, once per ranker: (rank, doc) of its highest judged documents
    top = {(q, r): _top_judged(runs[r], qrels, q, args.judged) for q in shown for r in (args.a, args.b)}
    docs_needed = {d for pairs in top.values() for _, d in pairs}
    docs = ds.docs(docs_needed)
    for q in shown:
        w(f"## {q}: {_one_line(queries.get(q, '(no text)'))}\n")
        sa, sb = f"{args.a} {va[q]:.4f}", f"{args.b} {vb[q]:.4f}"
        sa, sb = (f"**{sa}**", sb) if va[q] > vb[q] else (sa, f"**{sb}**")
        w(f"{measure}: {sa}, {sb} (Δ {va[q] - vb[q]:+.4f}); "
          f"{sum(1 for g in qrels[q].values() if g > 0)} relevant of {len(qrels[q])} judged.\n")
        w("| ranker | rank | doc | grade | opening words |")
        w("|---|---:|---|---:|---|")
        for r in (args.a, args.b):
            if not top[q, r]:
                w(f"| {r} | — | no judged document in its top {len(runs[r].get(q, {}))} | | |")
            for rank, d in top[q, r]:
                text = docs[d].joined() if d in docs else ""
                w(f"| {r} | {rank} | {d} | {qrels[q][d]} | {_opening(text)} |")
        w("")
    return "\n".join(out)


def _not_trained_on(runner, ranker: str, ds) -> None:
    """The leakage guard for comparisons: no model is compared on the queries it learnt from (a
    suite's guard refuses it when the suite is defined; compare can name any dataset)."""
    twin = runner.models.guard.learnt_twin(ranker, ds.name)     # the one leakage guard (training.guard)
    if twin is not None:
        recipe, used = twin
        raise ConfigError(f"compare: {ranker} depends on recipe {recipe}, which learnt from {used}: "
                          f"comparing it on {ds.name} would measure what it memorised; pick a held-out "
                          f"dataset")


def _ranking(run, q: str) -> list[str]:
    """A query's documents in rank order, as evaluated (trec_eval's)."""
    return trec_eval_order(run.get(q, {}))


def _top_judged(run, qrels, q: str, n: int) -> list[tuple[int, str]]:
    """(rank, doc) of the n judged documents the run ranked highest for query q."""
    judged = qrels.get(q, {})
    return [(i, d) for i, d in enumerate(_ranking(run, q), 1) if d in judged][:n]


def _one_line(text: str, chars: int = 200) -> str:
    """Text for one markdown line (a heading, a table cell): whitespace runs (newlines too) become
    one space, at most ``chars`` characters, '|' escaped."""
    s = " ".join(text.split())
    if len(s) > chars:
        s = s[:chars].rstrip() + " …"
    return s.replace("|", "\\|")


def _opening(text: str, words: int = 14) -> str:
    parts = text.split()
    return _one_line(" ".join(parts[:words]) + (" …" if len(parts) > words else ""), chars=160)
