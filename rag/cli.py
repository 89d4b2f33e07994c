"""``rankbench rag RANKER "question" --dataset D --budget 512``: the context a RAG reader would get,
with its citations, each passage's scores and tokens, and what the filters dropped."""
from __future__ import annotations

import json
import sys
from pathlib import Path


def add_arguments(p) -> None:
    p.add_argument("ranker", nargs="?")
    p.add_argument("question", nargs="?")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--dataset", help="a dataset of bench.toml whose corpus is searched")
    where.add_argument("--corpus", help="a corpus.jsonl(.gz), or a folder with one")
    p.add_argument("--budget", type=int, default=512, help="tokens of context (default 512; 0: none)")
    p.add_argument("--no-budget", action="store_true", help="no token budget")
    p.add_argument("--top-k", type=int, default=None, help="at most this many passages")
    p.add_argument("--threshold", type=float, default=None, help="drop passages scoring below this")
    p.add_argument("--candidates", type=int, default=None,
                   help="passages the chain returns before filtering (default: the reranker's depth, or 50)")
    p.add_argument("--tokenizer", default=None,
                   help="the reader's Hugging Face tokenizer, a name or folder (default all-MiniLM-L6-v2's)")
    p.add_argument("--overflow", choices=["truncate", "skip", "stop"], default="truncate",
                   help="the first passage over the budget: cut it to fit (default), skip it, or stop")
    p.add_argument("--no-dedupe", action="store_true", help="keep repeated ids and near-duplicate texts")
    p.add_argument("--json", action="store_true", help="the result as JSON")
    p.add_argument("--report", action="store_true",
                   help="write reports/rag.md: bench.toml's [rag] pipelines measured against the qrels")


def cmd_rag(args) -> int:
    from harness.cli_inspect import load
    from harness.data import read_corpus
    from harness.runner import Runner

    from .pipeline import DEFAULT_TOKENIZER, RagPipeline

    from harness.errors import ConfigError

    config, reports = load(args)
    runner = Runner(config, reports, progress=False, log=lambda m: print(m, file=sys.stderr))
    if args.report:
        if args.ranker or args.question or args.dataset or args.corpus:
            raise ConfigError("rag --report takes its pipelines and datasets from bench.toml's [rag]; give no "
                              "ranker, question, --dataset or --corpus with it")
        from .rag_report import write

        print(f"wrote {write(runner, reports, log=lambda m: print(m, file=sys.stderr))}", file=sys.stderr)
        return 0
    if not args.ranker or not args.question or not (args.dataset or args.corpus):
        raise ConfigError('rag needs RANKER "question" and --dataset or --corpus (or --report)')
    config.ranker(args.ranker)               # an unknown name fails here, naming the known ones
    data = read_corpus(Path(args.corpus)) if args.corpus else runner.dataset(args.dataset)
    pipe = runner.pipeline(args.ranker)
    pipe.prepare(data)
    pipe.rerank_from_index()        # a bi-encoder reranks from the encoded corpus, as a deployment does
    rag = RagPipeline(pipe, budget=None if args.no_budget else args.budget, top_k=args.top_k,
                      threshold=args.threshold, dedupe=not args.no_dedupe, overflow=args.overflow,
                      tokenizer=args.tokenizer or DEFAULT_TOKENIZER, candidates=args.candidates)
    res = rag.context(args.question)
    ctx = res.context
    if args.json:
        print(json.dumps({"question": res.question, "ranker": args.ranker, "chain": list(reversed(pipe.stage_names())),
                          "score_mode": res.score_mode, "tokenizer": ctx.tokenizer, "budget": ctx.budget,
                          "tokens": ctx.tokens, "candidates": res.candidates, "dropped": ctx.dropped,
                          "passages": [{"citation": p.citation, "doc_id": p.doc_id, "score": p.score,
                                        "raw_score": p.raw_score, "retrieval_score": p.retrieval_score,
                                        "rank": p.rank, "tokens": p.tokens, "truncated": p.truncated,
                                        "title": p.title, "text": p.text} for p in ctx.passages],
                          "context": ctx.text, "timings_ms": res.timings_ms}, indent=1))
        return 0
    chain = " -> ".join(reversed(pipe.stage_names()))
    budget = f"{ctx.tokens}/{ctx.budget}" if ctx.budget is not None else f"{ctx.tokens}"
    dropped = ", ".join(f"{n} {why.replace('_', ' ')}" for why, n in ctx.dropped.items() if n) or "none"
    print(f"question: {res.question}")
    print(f"chain: {chain} on {data.name}; scores: {res.score_mode}; {budget} tokens ({ctx.tokenizer}); "
          f"{len(ctx.passages)} of {res.candidates} candidates (dropped: {dropped}); "
          f"{res.timings_ms['search'] + res.timings_ms['context']:.0f} ms")
    print()
    for p in ctx.passages:
        first = f", first stage {p.retrieval_score:.4g}" if p.retrieval_score is not None else ""
        cut = ", truncated" if p.truncated else ""
        print(f"[{p.citation}] {p.doc_id}  score {p.score:.4f}{first}  rank {p.rank}  {p.tokens} tokens{cut}")
    print()
    print(ctx.text)
    return 0


def add_calibrate_arguments(p) -> None:
    p.add_argument("ranker", nargs="?", help="a bench.toml ranker whose scores to calibrate")
    p.add_argument("--dataset", help="the dataset whose judged pairs the calibrators are fitted on "
                                     "(a training or dev split)")
    p.add_argument("--test", help="a held-out dataset to measure them on (ECE, Brier, NLL)")
    p.add_argument("--max-queries", type=int, default=150, help="queries sampled per dataset (seeded; 0: all)")
    p.add_argument("--target-precision", type=float, default=None,
                   help="also give the threshold whose kept fit pairs reach this precision")
    p.add_argument("--report", action="store_true",
                   help="write reports/calibration.md from bench.toml's [calibration] models and pairs")


def cmd_calibrate(args) -> int:
    from harness.calibration import METHODS, measures, threshold_for_precision
    from harness.cli_inspect import load
    from harness.errors import ConfigError
    from harness.runner import Runner

    from .calibrate import calibrators, check_held_out, pairs

    config, reports = load(args)
    runner = Runner(config, reports, progress=False, log=lambda m: print(m, file=sys.stderr))
    if args.report:
        if args.ranker or args.dataset or args.test:
            raise ConfigError("calibrate --report takes its models and datasets from bench.toml's [calibration]; "
                              "give no ranker, --dataset or --test with it")
        from .calibration_report import write

        path = write(runner, reports, log=lambda m: print(m, file=sys.stderr))
        print(f"wrote {path}", file=sys.stderr)
        return 0
    if not args.ranker or not args.dataset:
        raise ConfigError("calibrate needs a RANKER and --dataset (the split to fit on), or --report")
    config.ranker(args.ranker)
    shared = check_held_out(runner, args.dataset, args.test) if args.test else frozenset()
    cals, fitted = calibrators(runner, args.ranker, args.dataset, args.max_queries)
    print(f"{args.ranker} on {args.dataset}: {fitted.scores.size} pairs, {fitted.positives} relevant, "
          f"{fitted.queries} queries ({fitted.source})")
    test = pairs(runner, args.ranker, args.test, args.max_queries, exclude=shared) if args.test else None
    if test is not None:
        print(f"held out: {args.test}, {test.scores.size} pairs, {test.positives} relevant")
    for m in METHODS:
        cal = cals[m]
        shown = {k: (round(v, 5) if isinstance(v, float) else f"{len(v)} steps") for k, v in cal.params.items()
                 if m != "isotonic" or k == "x"}
        line = f"  {m:<12} {shown or ''}"
        if test is not None:
            t = measures(cal.transform(test.scores), test.labels)
            line += f"  test ECE-w {t['ece_width']:.4f}  ECE-m {t['ece_mass']:.4f}  Brier {t['brier']:.4f}  NLL {t['nll']:.4f}"
        if args.target_precision is not None:
            thr = threshold_for_precision(cal.transform(fitted.scores), fitted.labels, args.target_precision)
            line += f"  threshold@P{args.target_precision:g} {thr['threshold']}"
        for note in cal.notes:
            line += f"  ({note})"
        print(line)
    return 0
