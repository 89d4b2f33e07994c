"""``rankbench rag RANKER "question" --dataset D --budget 512``: the context a RAG reader would get,
with its citations, each passage's scores and tokens, and what the filters dropped."""
from __future__ import annotations

import json
import sys
from pathlib import Path


def add_arguments(p) -> None:
    p.add_argument("ranker")
    p.add_argument("question")
    where = p.add_mutually_exclusive_group(required=True)
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


def cmd_rag(args) -> int:
    from harness.cli_inspect import load
    from harness.data import read_corpus
    from harness.runner import Runner

    from .pipeline import DEFAULT_TOKENIZER, RagPipeline

    config, reports = load(args)
    config.ranker(args.ranker)               # an unknown name fails here, naming the known ones
    runner = Runner(config, reports, progress=False, log=lambda m: print(m, file=sys.stderr))
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
