"""Retrieve, rerank, filter, dedupe and build the context: a RAG pipeline on a rankbench Pipeline.

    from harness.api import load
    from rag import RagPipeline

    bench = load()
    rag = RagPipeline(bench.pipeline("minilm-rerank-bm25", dataset="scifact"), budget=512,
                      tokenizer="sentence-transformers/all-MiniLM-L6-v2")
    ctx = rag.context("do statins lower mortality?")
    print(ctx.text)                         # "[1] title\\ntext\\n\\n[2] ..."
    ctx.passages[0].score, ctx.citations()  # scores kept, citation id -> doc id

The question goes through the configured chain (first stage, then reranker) over the corpus the
pipeline was prepared on. Scores are the reranker's own unless a score function (a calibrator)
maps them; the threshold compares the mapped score. Runtime overrides (``context(q, threshold=0.0)``)
replace the pipeline's values whatever they are, falsy ones included.
"""
from __future__ import annotations

import asyncio
import dataclasses
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from harness.errors import ConfigError, RankerUnavailable

from .context import Candidate, Context, ContextSpec, TokenCounter, build_context, token_counter

if TYPE_CHECKING:
    from harness.pipeline import Pipeline

DEFAULT_TOKENIZER = "sentence-transformers/all-MiniLM-L6-v2"
PROMPT = ("Answer the question from the passages below. Cite the passages you use by their number, "
          "as [1].\n\n{context}\n\nQuestion: {question}\nAnswer:")


@dataclass(frozen=True)
class RagResult:
    question: str
    context: Context
    candidates: int             # how many the chain returned before filtering
    score_mode: str             # "raw", or the calibrator's name
    timings_ms: dict

    @property
    def text(self) -> str:
        return self.context.text

    @property
    def passages(self):
        return self.context.passages

    def citations(self) -> dict[int, str]:
        return self.context.citations()


@dataclass(frozen=True)
class Answer:
    text: str
    prompt: str
    result: RagResult


class RagPipeline:
    def __init__(self, pipeline: "Pipeline", *, budget: int | None = 512, top_k: int | None = None,
                 threshold: float | None = None, dedupe: bool = True, near_duplicate: float | None = 0.9,
                 overflow: str = "truncate", min_tokens: int = 32,
                 tokenizer: "str | Callable | TokenCounter" = DEFAULT_TOKENIZER,
                 candidates: int | None = None, score: "Callable[[float], float] | None" = None,
                 score_name: str | None = None):
        if pipeline.dataset is None:
            raise RankerUnavailable(f"pipeline {pipeline.name} is not prepared: call prepare(dataset) "
                                    f"(or Bench.pipeline(name, dataset=...)) before building a RAG pipeline")
        reason = pipeline.cannot_search()
        if reason is not None:
            raise RankerUnavailable(reason)
        if candidates is not None and (isinstance(candidates, bool) or not isinstance(candidates, int)
                                       or candidates < 1):
            raise ConfigError(f"candidates: a positive whole number or None, found {candidates!r}")
        self.pipeline = pipeline
        self.spec = ContextSpec(budget=budget, top_k=top_k, threshold=threshold, dedupe=dedupe,
                                near_duplicate=near_duplicate, overflow=overflow, min_tokens=min_tokens)
        self.tokens = token_counter(tokenizer)
        # how many ranked passages the chain returns: a reranker's depth, else 50
        self.candidates = candidates or (pipeline.depth if pipeline.first is not None else 50)
        self.score = score
        self.score_name = score_name or (getattr(score, "name", None) if score is not None else "raw") or "mapped"

    # -- the context -------------------------------------------------------------------------------

    def context(self, question: str, **overrides) -> RagResult:
        """The context for a new question; keyword overrides replace this pipeline's ContextSpec
        values for this call (budget, top_k, threshold, dedupe, near_duplicate, overflow, ...)."""
        spec = self._spec(overrides)
        t0 = time.perf_counter()
        found = self.pipeline.search(question, k=self.candidates)
        t1 = time.perf_counter()
        cands = [Candidate(doc_id=h.doc_id, text=h.text, title=h.title, raw_score=h.score,
                           score=self._mapped(h.score), retrieval_score=h.first_stage_score, rank=h.rank)
                 for h in found.hits]
        ctx = build_context(cands, spec, self.tokens)
        t2 = time.perf_counter()
        timings = {**found.timings_ms, "search": round((t1 - t0) * 1000, 3),
                   "context": round((t2 - t1) * 1000, 3)}
        return RagResult(question, ctx, len(cands), self.score_name, timings)

    async def acontext(self, question: str, **overrides) -> RagResult:
        """``context`` off the event loop (the models run in a worker thread)."""
        return await asyncio.to_thread(self.context, question, **overrides)

    def answer(self, question: str, generate: Callable[[str], str], prompt: str = PROMPT,
               **overrides) -> Answer:
        """The context, then ``generate(prompt)`` (any callable: a local model, an OpenAI-compatible
        client's wrapper); the prompt has ``{context}`` and ``{question}``."""
        if not callable(generate):
            raise ConfigError(f"generate: a callable taking the prompt and returning text, found {generate!r}")
        result = self.context(question, **overrides)
        text = prompt.format(context=result.text, question=question)
        out = generate(text)
        if not isinstance(out, str):
            raise ConfigError(f"generate returned {type(out).__name__}, not the answer's text")
        return Answer(out, text, result)

    async def aanswer(self, question: str, generate: Callable, prompt: str = PROMPT, **overrides) -> Answer:
        result = await self.acontext(question, **overrides)
        text = prompt.format(context=result.text, question=question)
        out = generate(text)
        if asyncio.iscoroutine(out):
            out = await out
        if not isinstance(out, str):
            raise ConfigError(f"generate returned {type(out).__name__}, not the answer's text")
        return Answer(out, text, result)

    # -- helpers -----------------------------------------------------------------------------------

    def _spec(self, overrides: dict) -> ContextSpec:
        names = {f.name for f in dataclasses.fields(ContextSpec)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise ConfigError(f"unknown context option(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}")
        return dataclasses.replace(self.spec, **overrides) if overrides else self.spec

    def _mapped(self, raw: float) -> float:
        if self.score is None:
            return float(raw)
        return float(self.score(raw))


def openai_generator(model: str, base_url: str | None = None, api_key: str | None = None,
                     timeout_s: float = 60.0) -> Callable[[str], str]:
    """A ``generate`` callable on an OpenAI-compatible chat endpoint. Offline (no route to the
    endpoint) it fails at once with a clear error instead of hanging."""
    from harness.net import reachable

    def generate(prompt: str) -> str:
        try:
            from openai import OpenAI
        except ImportError:
            raise RankerUnavailable("generation through an OpenAI-compatible endpoint needs the openai "
                                    "package: pip install openai") from None
        url = base_url or "https://api.openai.com/v1"
        if not reachable(url):
            raise RankerUnavailable(f"the generation endpoint {url} cannot be reached (offline?): pass "
                                    f"another generate callable, or base_url of a local server")
        client = OpenAI(base_url=url, api_key=api_key, timeout=timeout_s, max_retries=0)
        reply = client.chat.completions.create(model=model, messages=[{"role": "user", "content": prompt}])
        return reply.choices[0].message.content or ""

    return generate
