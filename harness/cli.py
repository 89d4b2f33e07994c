"""The rankbench command line. `rankbench COMMAND --help` describes each command."""
from __future__ import annotations

import argparse
import os
import sys

from .cli_build import cmd_bench, cmd_compare, cmd_export, cmd_plan, cmd_scale, cmd_train
from .cli_inspect import cmd_ls, cmd_manifest, cmd_seed_irds, cmd_validate
from .cli_inspect import load as _load
from .errors import RankbenchError

EPILOG = """examples:
  rankbench run quick                      run the quick suite and write reports/quick.md
  rankbench run beir --ranker bm25         one ranker of a suite, every dataset
  rankbench check smoke                    compare results with reports/baselines.toml
  rankbench compare tas-b-run bm25-run --dataset dl19
                                           where two rankers differ most, query by query
  rankbench bench [--compare]              hot-path micro-benchmarks, saved; --compare fails on a slowdown
  rankbench rag minilm-rerank-bm25 "do statins lower mortality?" --dataset scifact --budget 512
                                           the context a RAG reader gets, with citations and scores
  rankbench ls rankers                     what bench.toml defines
  rankbench train ce-teacher               train the model behind a ranker (cached)
  rankbench export ce-student-int8         export a ranker's model to ONNX (fp32 / INT8 / fp16), cached
"""


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default=os.environ.get("RANKBENCH_CONFIG", "bench.toml"),
                   help="experiment matrix (default: bench.toml, or $RANKBENCH_CONFIG)")
    p.add_argument("--reports", default=None,
                   help="reports folder (default: reports/ beside the config)")


def _cells(p: argparse.ArgumentParser) -> None:
    """A suite, and optionally some of its rankers and datasets (run, plan)."""
    p.add_argument("suite")
    p.add_argument("--ranker", action="append", help="only this ranker (repeatable)")
    p.add_argument("--dataset", action="append", help="only this dataset (repeatable)")


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="rankbench", description="Train and benchmark rankers on real IR data.",
                                 epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("serve", help="serve a ranker over HTTP: /rerank, /search, /embed, /info, /metrics",
                       description="Serve a bench.toml ranker (the one its reports measured) with FastAPI. "
                                   "Models load and the corpus is indexed before the port opens.")
    p.add_argument("ranker")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--dataset", help="a dataset of bench.toml whose corpus /search searches")
    where.add_argument("--corpus", help="a corpus.jsonl(.gz), or a folder with one, for /search")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--api-key", default=None, help="require this bearer token (or set RANKBENCH_API_KEY)")
    p.add_argument("--cors", action="append", help="an origin allowed by CORS (repeatable; default none)")
    for name, typ, what in (("max-documents", int, "documents per /rerank request (default 10000)"),
                            ("batch-documents", int, "the batch cap: bigger requests are split (default 1000)"),
                            ("max-batch-tokens", int, "token budget of a batch (default 32768)"),
                            ("max-wait-ms", float, "how long a batch waits for more requests (default 2)"),
                            ("max-queue", int, "queued items before 429 (default 512)"),
                            ("timeout-s", float, "a request's deadline (default 30)"),
                            ("cache-entries", int, "LRU result cache size (default 1024; 0: off)"),
                            ("threshold", float, "drop results scoring below this"),
                            ("encode-batch-size", int, "the model's batch size while serving (default: the ranker's)")):
        p.add_argument(f"--{name}", type=typ, default=None, help=what)
    p.add_argument("--score-mode", choices=["raw", "sigmoid", "calibrated"], default=None,
                   help="scores as the model gives them, their sigmoid, or calibrated probabilities (--calibrate-on)")
    p.add_argument("--calibrator", choices=["identity", "temperature", "platt", "isotonic"], default=None,
                   help="the calibrator for --score-mode calibrated (default platt)")
    p.add_argument("--calibrate-on", default=None,
                   help="the dataset (a training or dev split) the calibrator is fitted on, before the port opens")
    p.add_argument("--calibration-queries", type=int, default=None,
                   help="judged queries sampled from it (default 150; 0: all)")
    p.add_argument("--log-level", default="warning")
    _common(p)

    p = sub.add_parser("rag", help="the context a RAG reader gets for a question: passages, citations, scores",
                       description="Retrieve and rerank through a bench.toml chain, filter (threshold, top-k, "
                                   "duplicates) and pack the passages into a token budget, with citation ids.")
    from rag.cli import add_arguments

    add_arguments(p)
    _common(p)

    p = sub.add_parser("calibrate", help="fit score calibrators (temperature, Platt, isotonic) on judged pairs",
                       description="Fit a ranker's calibrators on a dataset's judged pairs (cached by content) "
                                   "and measure them on a held-out one; --report writes reports/calibration.md.")
    from rag.cli import add_calibrate_arguments

    add_calibrate_arguments(p)
    _common(p)

    p = sub.add_parser("run", help="run a suite's cells (cached, resumable) and write its report",
                       description="Run every (ranker, dataset) cell of a suite. Finished cells are written "
                                   "at once, cached runs are reused, and the report is regenerated.")
    _cells(p)
    p.add_argument("--force", action="store_true", help="ignore cached runs and up-to-date results")
    p.add_argument("--threads", type=int, default=0, help="CPU threads for rankers (default: all cores)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--no-report", action="store_true", help="do not regenerate the report")
    p.add_argument("--shard", default=None, metavar="I/N",
                   help="only the I-th of N shares of the cells (see rankbench plan); no report: write it "
                        "with rankbench report once every share is done")
    p.add_argument("--in-process", action="store_true",
                   help="make every run in this process (faster to debug; a cell's peak memory then "
                        "includes what earlier cells left loaded); default: each run measured in a "
                        "fresh process of its own")
    p.add_argument("--executor", choices=["local", "ray"], default="local",
                   help="local: the cells one after another in this process (default); ray: the suite's plan "
                        "as Ray tasks (pip install 'rankbench[ray]')")
    p.add_argument("--address", default=None,
                   help="with --executor ray: the cluster to join (ADDR:PORT, or auto); default: start one here")
    p.add_argument("--encode-actors", type=int, default=None,
                   help="with --executor ray: Ray Data actors that encode each corpus (default: one per node; "
                        "0: each corpus encoded by one task)")
    _common(p)

    p = sub.add_parser("scale", help="measure what Ray buys and costs here: reports/scale.md",
                       description="Encoding throughput in one process and on Ray Data (1 and 2 actors), the Ray "
                                   "executor's overhead on the smoke and quick suites, a projection to MS MARCO and "
                                   "BEIR, and a sharded encoding on a two-node test cluster (about 20 minutes).")
    p.add_argument("--report", action="store_true", help="measure and write reports/scale.md")
    p.add_argument("--passages", type=int, default=512, help="passages per corpus for the throughput runs")
    p.add_argument("--shards", type=int, default=4, help="shards of NFCorpus in the sharded run")
    _common(p)

    p = sub.add_parser("plan", help="what a suite needs (training, exports, indexes, runs, cells) and what is cached",
                       description="The suite's dependency graph, in the order it can be done, each node "
                                   "with its cache entry and whether it is there. Nothing is built or run.")
    _cells(p)
    p.add_argument("--shard", default=None, metavar="I/N", help="only the I-th of N shares of the cells, and what they need")
    p.add_argument("--json", action="store_true", help="the plan as JSON")
    _common(p)

    p = sub.add_parser("train", help="train the model behind a ranker (model = \"recipe:NAME\")",
                       description="Build the mined training data and train the recipe's model into the "
                                   "cache, where every run that uses it finds it. RANKER may also name a "
                                   "recipe directly.")
    p.add_argument("ranker")
    p.add_argument("--force", action="store_true", help="train again even if the cache has the model")
    p.add_argument("--data-only", action="store_true", help="build and describe the training data; no training")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (default: all cores)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    _common(p)

    p = sub.add_parser("export", help="export an onnx ranker's model (kind = \"onnx\") into the cache",
                       description="Export the source ranker's model to ONNX and build the ranker's variant "
                                   "(fp32, int8-dynamic, int8-static, fp16) into the cache, where every run "
                                   "that uses it finds it. Prints the folder and its size.")
    p.add_argument("ranker", nargs="+")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (default: all cores)")
    _common(p)

    p = sub.add_parser("report", help="regenerate reports/SUITE.md from the result JSONs",
                       description="Write the suite's markdown leaderboard (deterministic).")
    p.add_argument("suite")
    p.add_argument("--check", action="store_true", help="exit 1 if the committed report is stale; write nothing")
    _common(p)

    p = sub.add_parser("compare", help="where two rankers differ most, query by query (markdown)",
                       description="The queries where rankers A and B differ most on a measure: query "
                                   "text, both scores and the judged documents each ranked highest, with "
                                   "the suite's paired test and win / tie / loss counts. Runs come from the "
                                   "cache, or are computed as `rankbench run SUITE` would.")
    p.add_argument("a", metavar="A")
    p.add_argument("b", metavar="B")
    p.add_argument("--dataset", required=True)
    p.add_argument("--suite", help="whose settings to run with (default: the first suite with both and the dataset)")
    p.add_argument("--measure", help="an ir_measures name (default: the dataset's first measure)")
    p.add_argument("--top", type=int, default=10, help="queries to show (default 10)")
    p.add_argument("--judged", type=int, default=3, help="judged documents per ranker and query (default 3)")
    p.add_argument("--out", help="write the markdown here instead of standard output")
    _common(p)

    p = sub.add_parser("bench", help="the hot-path micro-benchmarks (pytest-benchmark), saved and compared",
                       description="Run benchmarks/ with pytest-benchmark at a fixed thread count, save the "
                                   "JSON under reports/benchmarks/<machine id>/, and with --compare fail when a "
                                   "median is slower than the last run saved on this machine by more than "
                                   "[check] benchmark_slowdown. See docs/MEASUREMENT.md.")
    p.add_argument("--compare", action="store_true", help="compare with the last run saved on this machine")
    p.add_argument("--no-save", action="store_true", help="do not save this run")
    p.add_argument("--threads", type=int, default=2, help="threads for every library (default 2)")
    p.add_argument("-k", dest="select", help="only benchmarks matching this pytest -k expression")
    p.add_argument("--max-slowdown", type=float, default=None,
                   help="override [check] benchmark_slowdown (0.25 = 25%% slower median fails)")
    _common(p)

    p = sub.add_parser("check", help="compare results with accepted baselines and published figures",
                       description="OK / OKISH / FAIL per cell and measure; exits 1 on any FAIL.")
    p.add_argument("suite")
    p.add_argument("--quiet", action="store_true", help="print only what is not OK")
    _common(p)

    p = sub.add_parser("accept", help="make the suite's current results its baseline",
                       description="Write the suite's results into reports/baselines.toml.")
    p.add_argument("suite")
    _common(p)

    p = sub.add_parser("ls", help="list datasets, rankers, suites, measures or ranker kinds",
                       description="List what bench.toml defines.")
    p.add_argument("what", nargs="?", default="all",
                   choices=["all", "datasets", "rankers", "suites", "measures", "kinds"])
    _common(p)

    p = sub.add_parser("validate", help="parse all config and data without running anything",
                       description="Check bench.toml (keys, references, ranker parameters, measures) and "
                                   "parse every local dataset it names (checksums, every line).")
    p.add_argument("--config-only", action="store_true", help="skip parsing the data files")
    _common(p)

    p = sub.add_parser("seed-irds", help="seed ir_datasets' cache from a shipped copy (offline)",
                       description="Place a local copy where ir_datasets looks for its downloads, for "
                                   "an irds: dataset of bench.toml that names seed_from.")
    p.add_argument("dataset")
    _common(p)

    p = sub.add_parser("manifest", help="write MANIFEST.tsv (sha256 of every file) for a data folder",
                       description="Checksums are verified whenever rankbench reads a file of the folder.")
    p.add_argument("folder")
    return ap


def cmd_rag(args) -> int:
    from rag.cli import cmd_rag as run

    return run(args)


def cmd_calibrate(args) -> int:
    from rag.cli import cmd_calibrate as run

    return run(args)


def cmd_serve(args) -> int:
    from serving.server import serve

    return serve(args)


def cmd_run(args) -> int:
    import time

    from . import timing

    t0 = time.perf_counter()
    try:
        return _run(args)
    finally:
        timing.dump(time.perf_counter() - t0)


def _run(args) -> int:
    from .report import write_report
    from .runner import Runner
    from .timing import phase

    with phase("config"):
        config, reports = _load(args)
    shard = None
    if args.shard:
        from .plan import parse_shard

        shard = parse_shard(args.shard)
    if args.address and args.executor != "ray":
        from .errors import ConfigError

        raise ConfigError("--address names a Ray cluster: give it with --executor ray")
    from .isolation import measure_in_child

    if args.executor == "ray":
        from distributed.executor import run_suite

        outcomes = run_suite(config, reports, args.suite, args.ranker, args.dataset, shard=shard, force=args.force,
                             threads=args.threads, address=args.address, encode_actors=args.encode_actors)
    else:
        runner = Runner(config, reports, progress=not args.no_progress, force=args.force, threads=args.threads,
                        isolate=None if args.in_process else measure_in_child)
        outcomes = runner.run_suite(args.suite, args.ranker, args.dataset, shard=shard)
    errors = [o for o in outcomes if o.status == "error"]
    if shard is not None and not args.no_report:
        print(f"shard {args.shard}: no report written; once every shard is done: rankbench report {args.suite}",
              file=sys.stderr)
    elif not args.no_report:
        with phase("report"):
            written = write_report(config, reports, args.suite)
        print(f"wrote {written[0]}" + (f" and {len(written) - 1} plot files" if len(written) > 1 else ""),
              file=sys.stderr)
    counts = {}
    for o in outcomes:
        counts[o.status] = counts.get(o.status, 0) + 1
    print("cells: " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())), file=sys.stderr)
    for o in errors:
        print(f"error: {o.ranker} on {o.dataset}: {o.message}", file=sys.stderr)
    return 1 if errors else 0


def cmd_report(args) -> int:
    from .report import check_report, report_path, write_report

    config, reports = _load(args)
    if args.check:
        problem = check_report(config, reports, args.suite)
        if problem:
            print(problem, file=sys.stderr)
            return 1
        print(f"{report_path(reports, args.suite)} is up to date", file=sys.stderr)
        return 0
    written = write_report(config, reports, args.suite)
    print(f"wrote {written[0]}" + (f" and {len(written) - 1} plot files" if len(written) > 1 else ""),
          file=sys.stderr)
    return 0


def cmd_check(args) -> int:
    from .check import check_suite

    config, reports = _load(args)
    verdicts = check_suite(config, reports, args.suite)
    for v in verdicts:
        if not args.quiet or v.verdict not in ("OK", "SKIP"):
            print(v.line())
    failed = sorted({v.cell for v in verdicts if v.verdict == "FAIL"})
    counts = {}
    for v in verdicts:
        counts[v.verdict] = counts.get(v.verdict, 0) + 1
    print(f"{args.suite}: " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())))
    if failed:
        print(f"FAIL in {len(failed)} cell(s): " + ", ".join(failed), file=sys.stderr)
        return 1
    return 0


def cmd_accept(args) -> int:
    from .check import accept_suite

    config, reports = _load(args)
    path = accept_suite(config, reports, args.suite)
    print(f"accepted {args.suite}'s results into {path}", file=sys.stderr)
    return 0


COMMANDS = {"serve": cmd_serve, "rag": cmd_rag, "calibrate": cmd_calibrate, "run": cmd_run, "plan": cmd_plan, "scale": cmd_scale, "train": cmd_train, "export": cmd_export, "report": cmd_report, "compare": cmd_compare, "bench": cmd_bench, "check": cmd_check, "accept": cmd_accept, "ls": cmd_ls,
            "validate": cmd_validate, "seed-irds": cmd_seed_irds, "manifest": cmd_manifest}


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from .data import irds_home

    os.environ.setdefault("IR_DATASETS_HOME", str(irds_home()))   # never ~/.ir_datasets
    args = parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except RankbenchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:    # the file system refused something no check foresaw: say what and where
        where = f"{e.filename}: " if e.filename else ""
        print(f"error: {where}{e.strerror or e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished cells are saved; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
