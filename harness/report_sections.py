"""The report's comparison sections: students beside their teachers, exported and quantized
variants beside their sources (each judged against the suite's bars), and the models trained here."""
from __future__ import annotations

from .suite_results import SuiteResults
from .tables import Column, Table, columns, mb, num, share, sig


def _machine(result: dict) -> str | None:
    """The machine that measured the result's efficiency: recorded with the run (a cached run keeps
    the machine it was timed on), else the result's provenance (runs cached before that was kept)."""
    return (result.get("efficiency") or {}).get("machine") or \
        ((result.get("provenance") or {}).get("machine") or {}).get("id")


def _bars(suite) -> dict:
    from .config import BARS

    return {**BARS, **(suite.bars or {})}


def _compare(results: SuiteResults, suite, a: str, b: str, d: str) -> dict | None:
    """Ranker a beside ranker b on dataset d: first measure, share kept, throughput ratio (same machine
    only), size ratio."""
    s, t = results.ok(a, d), results.ok(b, d)
    if s is None or t is None:
        return None
    m = next(iter(t["measures"]["aggregate"]))
    sv, tv = s["measures"]["aggregate"][m], t["measures"]["aggregate"][m]
    sp, tp = s["efficiency"].get("pairs_per_s"), t["efficiency"].get("pairs_per_s")
    same = _machine(s) == _machine(t)
    sb, tb = s["efficiency"].get("model_bytes"), t["efficiency"].get("model_bytes")
    return {"measure": m, "a": sv, "b": tv, "kept": sv / tv if tv else None, "a_pps": sp, "b_pps": tp,
            "same": same, "speed": sp / tp if sp and tp and same else None,
            "a_bytes": sb, "b_bytes": tb, "size": sb / tb if sb and tb else None}


def _speed(c: dict) -> str:
    if c["speed"] is None:
        return "— (other machine)" if not c["same"] else "—"
    return f"{c['speed']:.1f}x"


def _verdict(c: dict, kept: float, speedup: float, size: float | None = None) -> str:
    """"yes", or "no" and by how much each bar is missed."""
    figures = [c["kept"], c["speed"]] + ([c["size"]] if size is not None else [])
    short = []
    if c["kept"] is not None and c["kept"] < kept:
        short.append(f"kept {100 * (kept - c['kept']):.1f} points short")
    if c["speed"] is not None and c["speed"] < speedup:
        short.append(f"{speedup / c['speed']:.1f}x too slow")
    if size is not None and c["size"] is not None and c["size"] > size:
        short.append(f"size {100 * c['size']:.0f}% > {100 * size:.0f}%")
    if short:
        return "no: " + "; ".join(short)
    return "yes" if all(f is not None for f in figures) else "no"


def _table(w, title: str, intro: str, table: Table) -> None:
    """A comparison section: nothing when no pair ran."""
    if not table.rows:
        return
    w(f"## {title}\n")
    w(intro + "\n")
    for line in table.markdown():
        w(line)
    w("")


def _pair_columns(a: str, b: str) -> list[Column]:
    """The four text columns that say what is compared, where, on what measure."""
    return columns((a, lambda x: x[0], False), (b, lambda x: x[1], False), ("dataset", lambda x: x[2], False),
                   ("measure", lambda x: x[3]["measure"], False))


def _compared(results: SuiteResults, suite, table: dict):
    """(a, b, dataset, comparison) for each pair of a suite's students or variants table that ran."""
    for a, b in table.items():
        for d in suite.datasets:
            c = _compare(results, suite, a, b, d)
            if c is not None:
                yield a, b, d, c


def _pair_figures(b: str, a: str) -> list[Column]:
    """b's figure and a's, the share a keeps, each one's pairs per second and the speed-up."""
    return columns((b, lambda x: num(x[3]["b"]), True), (a, lambda x: num(x[3]["a"]), True),
                   ("kept", lambda x: share(x[3]["kept"]), True), (f"{b} pairs/s", lambda x: sig(x[3]["b_pps"]), True),
                   (f"{a} pairs/s", lambda x: sig(x[3]["a_pps"]), True), ("speed-up", lambda x: _speed(x[3]), True))


def _distillation(w, suite, results: SuiteResults) -> None:
    """Each student beside its teacher: share of the teacher's effectiveness kept, and throughput."""
    bars = _bars(suite)
    table = Table(_pair_columns("student", "teacher") + _pair_figures("teacher", "student") + columns(
        ("meets the bar", lambda x: _verdict(x[3], bars["kept"], bars["speedup"]), False)),
        list(_compared(results, suite, suite.students)))
    _table(w, "Distillation", f"Each student beside the teacher it learnt from, on the same candidates. Kept: the student's share of "
      f"the teacher's figure; speed-up: pairs scored per second, student over teacher, given only when both were "
      f"measured on the same machine (each result's provenance names it). The bar: at least "
      f"{100 * bars['kept']:.0f}% kept at {bars['speedup']:g}x or more.", table)


def _variants(w, suite, results: SuiteResults) -> None:
    """Each exported or quantized ranker beside the torch ranker it came from."""
    bars = _bars(suite)
    table = Table(_pair_columns("variant", "source") + _pair_figures("source", "variant") + columns(
        ("source MB", lambda x: mb(x[3]["b_bytes"]), True), ("variant MB", lambda x: mb(x[3]["a_bytes"]), True),
        ("size", lambda x: share(x[3]["size"], 0), True),
        ("meets the bar", lambda x: _verdict(x[3], bars["variant_kept"], bars["variant_speedup"], bars["variant_size"]),
         False)),
        list(_compared(results, suite, suite.variants)))
    _table(w, "Exported and quantized variants", f"Each variant beside the torch ranker it was exported from, on the same candidates. Kept: the variant's "
      f"share of the source's figure; speed-up: pairs per second, variant over source, same machine only; size: "
      f"the variant's files on disk over the source's. The bar: at least {100 * bars['variant_kept']:.0f}% kept, "
      f"{bars['variant_speedup']:g}x or more, at most {100 * bars['variant_size']:.0f}% of the size.", table)


def _trained_models(w, suite, results: SuiteResults) -> None:
    records: dict[str, dict] = {}
    for r in suite.rankers:
        for d in suite.datasets:
            c = results.ok(r, d)
            for rec in (c or {}).get("trained_models", []):
                records.setdefault(rec["recipe"], rec)
    if not records:
        return
    w("## Trained models\n")
    w("Models this project trains itself (`[recipes.*]` in bench.toml). Training never sees a query of an "
      "evaluation split of a suite that uses the model: the leakage guard refuses it by id (same corpus) "
      "or by exact text, and the counts are below.\n")
    w("| recipe | starts from | trained on (queries used / refused by the guard) | dev | steps | examples | "
      "train wall | device | rebuild |")
    w("|---|---|---|---|---:|---:|---:|---|---|")
    for name, rec in sorted(records.items()):
        seen = "; ".join(f"{d} `{v['source']}` split {v['split']} ({v['queries_used']} / "
                         f"{v['refused_by_leakage_guard']})" for d, v in rec["train"].items())
        dev = rec.get("dev")
        dev_s = "—" if not dev else (f"{dev['dataset']} ({dev['queries']} q): "
                                     f"{num(rec.get('start_dev'))} → {num(rec.get('best_dev'))}")
        minutes = rec["train_seconds"] / 60
        w(f"| {name} | {rec['init']} | {seen} | {dev_s} | {rec['steps']} | {rec['examples']} | "
          f"{minutes:.1f} min | {rec['device']} | `rankbench train {name}` |")
    w("")
    for name, rec in sorted(records.items()):
        learnt = (f" Distilled from `{rec['teacher']}`." if rec.get("teacher") else "")
        shape = ", ".join([rec["produces"]] + ([f"layers {rec['layers']}"] if rec.get("layers") else [])
                          + ([f"loss {rec['loss']}"] if rec.get("loss") else []))
        w(f"- **{name}** ({shape}): {rec.get('description') or rec['produces']}.{learnt} Evaluated on: "
          f"{', '.join(rec['evaluated_on']) or 'no suite'}. History, data and curves: "
          f"[`{rec['files']}`](models/{name}/).\n")
        w(f"  ![{name} training curves](models/{name}/curves.png)\n")
    w("")
