"""reports/rag.md: the context an LLM would read, measured against the qrels, for three pipelines
(retrieve; retrieve + rerank; retrieve + rerank + a calibrated threshold) at each token budget,
on each dataset of bench.toml's ``[rag]``, with significance letters as in the other reports.
The per-query values are written to reports/results/rag.json."""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from harness.calibration import threshold_for_precision
from harness.errors import ConfigError
from harness.files import atomic_write_text
from harness.tables import Column, Table

from .calibrate import calibrators, chain_for
from .context import Candidate, ContextSpec, build_context, token_counter
from .measures import MEASURES, TokenMemo, context_values, ideal_candidates

if TYPE_CHECKING:
    from harness.runner import Runner

LETTERS = "abcdefghijklmnopqrstuvwxyz"
PIPELINES = ("retrieve", "retrieve + rerank", "retrieve + rerank + threshold")


def compute(runner: "Runner", log=print) -> dict:
    from harness.types import drop_self_hits

    spec = runner.config.rag
    if spec is None:
        raise ConfigError(f"{runner.config.path}: no [rag] table to report on")
    cal_spec = runner.config.calibration
    max_q = cal_spec.max_queries if cal_spec is not None else 150
    settings = runner.config.settings
    tokens = TokenMemo(token_counter(spec.tokenizer))
    out = {"schema": 1, "tokenizer": spec.tokenizer, "budgets": list(spec.budgets), "calibrator": spec.calibrator,
           "target_precision": spec.target_precision, "datasets": {}}
    for test_on, fit_on in spec.datasets.items():
        ds = runner.dataset(test_on)
        retrieve, rerank = chain_for(runner, spec.retrieve, test_on), chain_for(runner, spec.rerank, test_on)
        fit_chain = chain_for(runner, spec.rerank, fit_on)
        log(f"[rag] {test_on}: {retrieve} / {rerank}; threshold fitted on {fit_on} via {fit_chain}")
        cals, fitted = calibrators(runner, fit_chain, fit_on, max_q, methods=(spec.calibrator,))
        cal = cals[spec.calibrator]
        thr = threshold_for_precision(cal.transform(fitted.scores), fitted.labels, spec.target_precision)
        runs = {}
        for name, chain in (("retrieve", retrieve), ("rerank", rerank)):
            run, _, _ = runner.get_run(chain, ds, settings.k, settings)
            runs[name] = drop_self_hits(run) if ds.conventions.drop_self_hits else run
        qrels = ds.qrels()
        level = ds.conventions.rel_level
        qids = sorted(q for q in qrels if any(g >= level for g in qrels[q].values()))
        needed = {d for r in runs.values() for q in qids for d in r.get(q, {})} | \
                 {d for q in qids for d, g in qrels[q].items() if g > 0}
        docs = ds.docs(sorted(d for d in needed if d in ds.doc_ids()))
        per_query = {p: {} for p in PIPELINES}
        sizes = {p: {b: [] for b in spec.budgets} for p in PIPELINES}
        for q in qids:
            grades = qrels[q]
            ideal = ideal_candidates(grades, docs, tokens)
            cands = {}
            for name in ("retrieve", "rerank"):
                ranked = sorted(runs[name].get(q, {}).items(), key=lambda kv: (-kv[1], kv[0]))
                cands[name] = [Candidate(d, docs[d].text, float(s), docs[d].title, float(s), rank=i)
                               for i, (d, s) in enumerate(ranked, 1) if d in docs]
            mapped = [Candidate(c.doc_id, c.text, cal(c.score), c.title, c.score, rank=c.rank) for c in cands["rerank"]]
            for p, cs, threshold in ((PIPELINES[0], cands["retrieve"], None), (PIPELINES[1], cands["rerank"], None),
                                     (PIPELINES[2], mapped, thr["threshold"])):
                vals = {}
                for b in spec.budgets:
                    cspec = ContextSpec(budget=b, threshold=threshold)
                    ctx = build_context(cs, cspec, tokens)
                    vals.update(context_values(cs, grades, level, cspec, tokens, ideal, ctx=ctx))
                    sizes[p][b].append((len(ctx.passages), ctx.tokens))
                per_query[p][q] = vals
        out["datasets"][test_on] = {
            "retrieve": retrieve, "rerank": rerank, "fit_on": fit_on, "fit_chain": fit_chain,
            "threshold": thr, "calibrator": cal.as_json() if cal.method != "isotonic" else {"method": "isotonic"},
            "queries": len(qids), "conventions": ds.conventions.name, "rel_level": level,
            "per_query": per_query,
            "context": {p: {str(b): {"passages": sum(n for n, _ in v) / len(v), "tokens": sum(t for _, t in v) / len(v)}
                            for b, v in sizes[p].items()} for p in PIPELINES}}
    return out


def markdown(data: dict, settings) -> str:
    """The report from its JSON (``compute``'s) and the config's settings (the significance test)."""
    from harness.report import tester

    alpha = settings.alpha
    test = tester(settings)
    out = []
    w = out.append
    budgets = data["budgets"]
    w("# RAG: what each pipeline puts in the reader's context\n")
    w("Three pipelines per dataset: the first stage alone (**retrieve**), the same candidates reranked "
      "(**retrieve + rerank**), and the reranked passages whose calibrated score clears a threshold "
      f"(**retrieve + rerank + threshold**: {data['calibrator']} calibration fitted on the dataset's calibration "
      f"split, the threshold the lowest whose kept fit pairs reach precision {data['target_precision']}). Each "
      "ranking becomes a context as `RagPipeline` builds one: duplicates dropped (ids, word-trigram Jaccard >= "
      f"0.9), passages in rank order as `[n] title / text` blocks counted with the `{data['tokenizer']}` "
      "tokenizer, the first block over the budget cut to fit (kept if at least 32 tokens remain). Measured "
      "against the qrels (no LLM): CtxRecall@B, the query's relevant passages inside the B-token context over "
      "all of them; CtxPrecision@B, the context's passages that are relevant; CtxGain@B, the graded gain inside "
      "the context over the most any ranking could fit in B tokens. Relevant: the dataset's level (DL: grade "
      ">= 2, BEIR: >= 1). Means over the queries with a relevant passage; a context the threshold leaves empty "
      "scores 0 on all three (the reader gets nothing), which the mean passages per context below make "
      "visible.\n")
    for d, info in data["datasets"].items():
        w(f"## {d}\n")
        thr = info["threshold"]
        w(f"{info['queries']} queries · retrieve `{info['retrieve']}` · rerank `{info['rerank']}` · threshold "
          f"{'none reached the target' if thr['threshold'] is None else format(thr['threshold'], '.3f')} "
          f"(fitted on {info['fit_on']} via `{info['fit_chain']}`: precision {_f(thr['precision'], 2)}, recall "
          f"{_f(thr['recall'], 2)} on its pairs)\n")
        names = list(info["per_query"])
        letters = {p: LETTERS[i] for i, p in enumerate(names)}
        measures = [f"{m}@{b}" for b in budgets for m in MEASURES]
        pq = {m: {p: {q: v[m] for q, v in info["per_query"][p].items()} for p in names} for m in measures}
        wins = {m: test.all_pairs(pq[m], alpha) for m in measures}
        means = {m: {p: sum(pq[m][p].values()) / max(len(pq[m][p]), 1) for p in names} for m in measures}

        def fig(p, m):
            v = f"{means[m][p]:.4f}"
            top = max(means[m].values())
            v = f"**{v}**" if means[m][p] == top else v
            beat = "".join(sorted(letters[x] for x in wins[m][p]))
            return v + (f"<sup>{beat}</sup>" if beat else "")

        cols = [Column("", lambda p: letters[p], False), Column("pipeline", lambda p: p, False)] + \
               [Column(m.replace("Ctx", ""), lambda p, m=m: fig(p, m)) for m in measures]
        for line in Table(cols, names).markdown():
            w(line)
        w("")
        ctx = info["context"]
        w("Mean passages / tokens in the context: " + "; ".join(
            f"{letters[p]} " + ", ".join(f"{ctx[p][str(b)]['passages']:.1f} / {ctx[p][str(b)]['tokens']:.0f} at {b}"
                                         for b in budgets) for p in names) + ".\n")
    w(f"<sup>x</sup>: significantly better than row x ({test.name} over the queries, Holm-corrected across the "
      f"pairs of each column, α = {alpha:g}). Regenerate: `rankbench rag --report` (runs and calibration pairs "
      f"come from the cache).\n")
    return "\n".join(out)


def _f(x, nd=3):
    return "—" if x is None else f"{x:.{nd}f}"


def write(runner: "Runner", reports: Path, log=print) -> Path:
    data = compute(runner, log)
    results = reports / "results" / "rag.json"
    results.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(results, json.dumps(data, indent=1) + "\n")
    path = reports / "rag.md"
    atomic_write_text(path, markdown(data, runner.config.settings))
    return path
