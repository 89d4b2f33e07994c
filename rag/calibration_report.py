"""reports/calibration.md: each model's scores calibrated on one dataset and measured on another
(held out), before (the fixed sigmoid servers apply) and after each fitted calibrator, with
reliability diagrams. The figures are also written to reports/results/calibration.json."""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from harness.calibration import METHODS, measures, reliability, threshold_for_precision
from harness.errors import ConfigError
from harness.files import atomic_write_text
from harness.tables import Column, Table

from .calibrate import calibrators, chain_for, check_held_out, pairs, same_scorer

if TYPE_CHECKING:
    from harness.runner import Runner

TARGET_PRECISION = 0.5
LABEL = {"identity": "before: sigmoid", "temperature": "temperature", "platt": "Platt", "isotonic": "isotonic"}


def compute(runner: "Runner", log=print) -> dict:
    spec = runner.config.calibration
    if spec is None:
        raise ConfigError(f"{runner.config.path}: no [calibration] table (models and pairs) to report on")
    rows = []
    for model, chains in spec.models.items():
        for fit_on, test_on in spec.pairs:
            shared = check_held_out(runner, fit_on, test_on)
            fit_chain, test_chain = chain_for(runner, chains, fit_on), chain_for(runner, chains, test_on)
            same_scorer(runner, [fit_chain, test_chain], f"[calibration] models.{model}")
            log(f"[calibration] {model}: fit on {fit_on} ({fit_chain}), test on {test_on} ({test_chain})")
            cals, fitted = calibrators(runner, fit_chain, fit_on, spec.max_queries)
            test = pairs(runner, test_chain, test_on, spec.max_queries, exclude=shared)
            methods = {}
            for m in METHODS:
                cal = cals[m]
                p_test = cal.transform(test.scores)
                t = threshold_for_precision(cal.transform(fitted.scores), fitted.labels, TARGET_PRECISION)
                held = None
                if t["threshold"] is not None:
                    kept = p_test >= t["threshold"]
                    held = {"precision": float(test.labels[kept].mean()) if kept.any() else None,
                            "recall": float(test.labels[kept].sum() / max(test.labels.sum(), 1)),
                            "kept": int(kept.sum())}
                methods[m] = {"params": cal.params if m != "isotonic" else {"steps": len(cal.params["x"])},
                              "notes": list(cal.notes), "test": measures(p_test, test.labels, spec.bins),
                              "fit": measures(cal.transform(fitted.scores), fitted.labels, spec.bins),
                              "reliability": reliability(p_test, test.labels, spec.bins),
                              "threshold": {**t, "on_test": held}}
            rows.append({"model": model, "fit": fit_on, "test": test_on, "fit_chain": fit_chain,
                         "test_chain": test_chain,
                         "fit_pairs": {"queries": fitted.queries, "n": int(fitted.scores.size),
                                       "positives": fitted.positives, "source": fitted.source},
                         "test_pairs": {"queries": test.queries, "n": int(test.scores.size),
                                        "positives": test.positives, "source": test.source},
                         "learnt_from_fit": _learnt(runner, fit_chain, fit_on),
                         "left_out": sorted(shared),
                         "methods": methods})
    return {"schema": 1, "bins": spec.bins, "max_queries": spec.max_queries, "target_precision": TARGET_PRECISION,
            "seed": runner.config.settings.seed, "rows": rows}


def _learnt(runner: "Runner", chain: str, dataset: str) -> str | None:
    """The recipe whose training data included the fit dataset, if any (then the fit is in-sample
    for the model: the held-out test figures are still honest)."""
    got = runner.models.guard.learnt_twin(chain, dataset)
    return got[0] if got else None


def _f(x, nd=3):
    return "—" if x is None else f"{x:.{nd}f}"


def markdown(data: dict, plots: dict[str, str]) -> str:
    out = []
    w = out.append
    w("# Calibration: do the scores mean a probability?\n")
    w("A reranker's raw score orders passages; a RAG threshold or a served `relevance_score` needs it to mean "
      "the chance that a passage is relevant. Each model below is calibrated on judged pairs of one dataset and "
      "measured on another, held out (different content, no shared query text). Pairs: every (query, passage) "
      f"the model's chain returns (the top 100 of the first stage, reranked) for up to {data['max_queries']} "
      "queries of each dataset (seeded), labelled relevant at the dataset's relevance level (DL: grade >= 2; "
      "BEIR: >= 1), unjudged as not relevant, as the measures count them. Before: the fixed sigmoid of the raw "
      "score, what TEI and infinity serve. After: temperature sigmoid(s/T), Platt sigmoid(a*s+b), isotonic "
      "regression (scikit-learn), each fitted on the fit pairs only. Every calibrator is strictly increasing, so "
      "no ranking changes (tests/test_calibration.py checks the order and nDCG@10 query by query, for MiniLM and "
      "for a cross-encoder). Order by the raw score all the same: trec_eval holds scores as 32-bit floats, and a "
      "calibrator that squeezes scores towards 0.5 (temperature, for logits that are all positive) leaves "
      "neighbours 2e-8 apart, which tie there; `rankbench serve` and `rankbench rag` order by the raw score and "
      "present the calibrated one.\n")
    w(f"Measures on the test pairs: ECE with {data['bins']} equal-width bins (ECE-w) and {data['bins']} equal-mass "
      "bins (ECE-m), MCE (the worst equal-width bin), Brier score, NLL. Threshold: the lowest calibrated score "
      f"whose kept fit pairs reach precision {data['target_precision']}, and the precision and recall it gives on "
      "the test pairs.\n")
    w("Reading the tables: temperature scaling has no bias term, so for scores that are all positive (a "
      "bi-encoder's cosines, BM25) the best it can do is push every probability towards 0.5; Platt and isotonic "
      "fit the base rate too. A threshold chosen for a target precision cuts the fit pairs at the same place "
      "whatever the (monotone) calibrator, so the test precision and recall it gives are the same in every row of "
      "a model; what calibration changes is that the number means a probability, so one threshold carries across "
      "models and queries. MCE is the worst bin, often one with few pairs. The cross-encoders trained here give "
      "every pair a logit far above 0 (mean p 1.000 before), so their fixed sigmoid is the worst calibrated of all "
      "(ECE-w 0.89 to 0.99); a fitted Platt or isotonic map brings them level with MiniLM.\n")
    w("## Summary: ECE-w before and after\n")
    pairs = list(dict.fromkeys((r["fit"], r["test"]) for r in data["rows"]))
    models = list(dict.fromkeys(r["model"] for r in data["rows"]))
    by = {(r["model"], r["fit"], r["test"]): r for r in data["rows"]}

    def cell(model, pair):
        r = by.get((model, *pair))
        if r is None:
            return "—"
        t = r["methods"]
        return (f"{_f(t['identity']['test']['ece_width'])} → {_f(t['platt']['test']['ece_width'])} / "
                f"{_f(t['isotonic']['test']['ece_width'])}")

    cols = [Column("model", lambda m: m, False)] + [
        Column(f"{a} → {b}", lambda m, p=(a, b): cell(m, p), False) for a, b in pairs]
    for line in Table(cols, models).markdown():
        w(line)
    w("\nEach cell: before (sigmoid) → Platt / isotonic, fitted on the left dataset, measured on the right one.\n")
    for a, b in pairs:
        rows = [r for r in data["rows"] if (r["fit"], r["test"]) == (a, b)]
        shift = " (a domain shift: MS MARCO passages to BEIR)" if a.startswith("dl") and not b.startswith("dl") else ""
        w(f"## Fit on {a}, test on {b}{shift}\n")
        flat = [(r, m) for r in rows for m in METHODS]
        table = Table([
            Column("model", lambda x: x[0]["model"] if x[1] == "identity" else "", False),
            Column("calibrator", lambda x: LABEL[x[1]], False),
            Column("ECE-w", lambda x: _f(x[0]["methods"][x[1]]["test"]["ece_width"])),
            Column("ECE-m", lambda x: _f(x[0]["methods"][x[1]]["test"]["ece_mass"])),
            Column("MCE", lambda x: _f(x[0]["methods"][x[1]]["test"]["mce"])),
            Column("Brier", lambda x: _f(x[0]["methods"][x[1]]["test"]["brier"], 4)),
            Column("NLL", lambda x: _f(x[0]["methods"][x[1]]["test"]["nll"])),
            Column("mean p", lambda x: _f(x[0]["methods"][x[1]]["test"]["mean_probability"])),
            Column("threshold", lambda x: _f(x[0]["methods"][x[1]]["threshold"]["threshold"])),
            Column("test P / R", lambda x: _pr(x[0]["methods"][x[1]]["threshold"]["on_test"]), False),
        ], flat)
        for line in table.markdown():
            w(line)
        w("")
        for r in rows:
            fp, tp = r["fit_pairs"], r["test_pairs"]
            note = (f" {r['model']}'s model learnt from {a} (recipe {r['learnt_from_fit']}): its fit is in-sample "
                    f"for the model, the test figures are held out." if r["learnt_from_fit"] else "")
            if r.get("left_out"):
                note += (f" Left out of the test pairs: {len(r['left_out'])} {b} queries whose text is also a "
                         f"{a} query ({', '.join(r['left_out'][:3])}).")
            w(f"- {r['model']}: fit {fp['n']} pairs ({fp['positives']} relevant, {fp['queries']} queries, "
              f"{r['fit_chain']}, {fp['source']}); test {tp['n']} pairs ({tp['positives']} relevant, "
              f"{tp['queries']} queries, {r['test_chain']}, {tp['source']}); positive rate "
              f"{r['methods']['identity']['test']['positive_rate']:.3f}.{note}")
        w("")
    w("## Reliability diagrams\n")
    for model in models:
        if model in plots:
            w(f"![reliability of {model}: share relevant against calibrated probability, one panel per "
              f"(fit, test) pair]({plots[model]})\n")
    w("Regenerate: `rankbench calibrate --report` (pairs are cached by content; fitting takes milliseconds).\n")
    return "\n".join(out)


def _pr(on_test) -> str:
    if not on_test:
        return "—"
    p = on_test["precision"]
    return f"{'—' if p is None else f'{p:.2f}'} / {on_test['recall']:.2f}"


def plot(data: dict, folder: Path) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    models = list(dict.fromkeys(r["model"] for r in data["rows"]))
    for model in models:
        rows = [r for r in data["rows"] if r["model"] == model]
        fig, axes = plt.subplots(1, len(rows), figsize=(3.2 * len(rows), 3.3), squeeze=False)
        for ax, r in zip(axes[0], rows):
            ax.plot([0, 1], [0, 1], color="0.7", lw=1, ls="--")
            for m, style in (("identity", "o-"), ("platt", "s-"), ("isotonic", "^-")):
                pts = r["methods"][m]["reliability"]
                ax.plot([p[0] for p in pts], [p[1] for p in pts], style, ms=3, lw=1, label=LABEL[m])
            ax.set_title(f"{r['fit']} → {r['test']}", fontsize=9)
            ax.set_xlim(0, 1)
            ax.set_ylim(0, 1)
            ax.set_xlabel("calibrated probability", fontsize=8)
            ax.tick_params(labelsize=7)
        axes[0][0].set_ylabel("share relevant", fontsize=8)
        axes[0][0].legend(fontsize=7, loc="upper left")
        fig.suptitle(f"{model}: reliability on held-out pairs", fontsize=10)
        fig.tight_layout()
        name = f"calibration-{model}.png"
        fig.savefig(folder / name, dpi=90, metadata={"Software": None})
        plt.close(fig)
        out[model] = f"plots/{name}"
    return out


def write(runner: "Runner", reports: Path, log=print) -> Path:
    data = compute(runner, log)
    results = reports / "results" / "calibration.json"
    results.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(results, json.dumps(data, indent=1) + "\n")
    plots = plot(data, reports / "plots")
    path = reports / "calibration.md"
    atomic_write_text(path, markdown(data, plots))
    return path
