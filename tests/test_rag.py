"""The RAG pipeline: threshold and top-k together, deduplication by id and near-duplicate text, a
token budget counted with the reader's tokenizer, citations, falsy overrides honoured, sync and
async, and generation offline failing at once. Real rankers on a real SciFact slice."""
from __future__ import annotations

import asyncio
import time

import pytest

from harness.cache import Cache
from harness.config import load_config
from harness.errors import ConfigError, RankerUnavailable
from harness.runner import Runner
from rag import Candidate, ContextSpec, RagPipeline, build_context, token_counter
from rag.context import CallableTokens, select


def words(text: str) -> list[str]:
    return text.split()


WORDS = CallableTokens(words, "whitespace")


def cand(i: int, score: float, text: str | None = None, title: str = "") -> Candidate:
    return Candidate(doc_id=f"d{i}", text=text or f"passage {i} " + " ".join(f"w{i}x{j}" for j in range(20)),
                     score=score, title=title, raw_score=score, rank=i)


# -- the context builder ---------------------------------------------------------------------------

def test_threshold_and_top_k_apply_together_and_zero_is_a_value():
    cands = [cand(1, 0.9), cand(2, 0.5), cand(3, 0.0), cand(4, -0.2), cand(5, 0.7)]
    kept, dropped = select(cands, ContextSpec(budget=None, threshold=0.0, top_k=2))
    assert [c.doc_id for c in kept] == ["d1", "d2"]          # rank order kept, not re-sorted
    assert dropped == {"below_threshold": 1, "duplicate_id": 0, "near_duplicate": 0, "over_top_k": 2}
    kept, _ = select(cands, ContextSpec(budget=None, threshold=0.0))
    assert [c.doc_id for c in kept] == ["d1", "d2", "d3", "d5"]    # 0.0 >= 0.0 is kept
    assert select(cands, ContextSpec(budget=None, top_k=0))[0] == []
    assert len(select(cands, ContextSpec(budget=None))[0]) == 5
    nan = [Candidate("n", "text", float("nan"))]
    assert select(nan, ContextSpec(budget=None, threshold=-1e9))[0] == []


def test_duplicates_by_id_and_near_duplicate_text_are_dropped_keeping_the_higher_ranked():
    base = "statins reduce the risk of cardiovascular events in patients with high cholesterol levels"
    cands = [Candidate("a", base, 3.0, rank=1), Candidate("a", "another text entirely", 2.9, rank=2),
             Candidate("b", base + " overall", 2.5, rank=3),     # one word added: near duplicate
             Candidate("c", "aspirin and bleeding risk in older adults", 2.0, rank=4)]
    kept, dropped = select(cands, ContextSpec(budget=None))
    assert [c.doc_id for c in kept] == ["a", "c"]
    assert dropped["duplicate_id"] == 1 and dropped["near_duplicate"] == 1
    kept, _ = select(cands, ContextSpec(budget=None, near_duplicate=None))
    assert [c.doc_id for c in kept] == ["a", "b", "c"]
    kept, _ = select(cands, ContextSpec(budget=None, dedupe=False))
    assert [c.doc_id for c in kept] == ["a", "a", "b", "c"]


@pytest.mark.parametrize("overflow", ["truncate", "skip", "stop"])
def test_the_budget_is_never_exceeded_and_citations_follow_context_order(overflow):
    cands = [cand(1, 3.0), cand(2, 2.0, text="short one"), cand(3, 1.0), cand(4, 0.5, text="tiny")]
    spec = ContextSpec(budget=40, overflow=overflow, min_tokens=5)
    ctx = build_context(cands, spec, WORDS)
    assert ctx.tokens <= 40 and len(words(ctx.text)) == ctx.tokens
    assert [p.citation for p in ctx.passages] == list(range(1, len(ctx.passages) + 1))
    assert ctx.text.startswith("[1] passage 1")
    assert ctx.citations() == {p.citation: p.doc_id for p in ctx.passages}
    ids = [p.doc_id for p in ctx.passages]
    if overflow == "truncate":           # the third block is cut to fill what is left, then stop
        assert ids == ["d1", "d2", "d3"] and ctx.passages[2].truncated and not ctx.passages[0].truncated
        assert ctx.tokens == 40
    elif overflow == "skip":             # the third does not fit; the fourth does
        assert ids == ["d1", "d2", "d4"] and not any(p.truncated for p in ctx.passages)
    else:
        assert ids == ["d1", "d2"]
    assert ctx.dropped["over_budget"] == len(cands) - len(ids)
    # the scores are kept on every passage
    assert [p.score for p in ctx.passages] == [c.score for c in cands if c.doc_id in ids]


def test_a_cut_below_min_tokens_is_left_out_and_zero_budget_is_empty():
    ctx = build_context([cand(1, 1.0), cand(2, 0.5)], ContextSpec(budget=30, min_tokens=10), WORDS)
    assert [p.doc_id for p in ctx.passages] == ["d1"] and ctx.dropped["over_budget"] == 1
    empty = build_context([cand(1, 1.0)], ContextSpec(budget=0), WORDS)
    assert empty.passages == () and empty.text == "" and empty.tokens == 0


def test_bad_options_are_clear_errors():
    for kwargs, needle in [({"budget": -1}, "budget"), ({"top_k": 1.5}, "top_k"), ({"threshold": "high"}, "threshold"),
                           ({"overflow": "wrap"}, "overflow"), ({"near_duplicate": 1.5}, "near_duplicate"),
                           ({"template": "{text}"}, "{citation}"), ({"budget": True}, "budget")]:
        with pytest.raises(ConfigError, match=needle):
            ContextSpec(**kwargs)
    with pytest.raises(ConfigError, match="tokenizer"):
        token_counter(42)
    with pytest.raises(ConfigError, match="returned float"):
        CallableTokens(lambda t: 1.5).count("x")


# -- on real rankers -------------------------------------------------------------------------------

CONFIG = """
[settings]
k = 50
latency_queries = 0

[datasets]
sample = "local:{sample}"

[rankers.bm25s]
kind = "bm25"
backend = "bm25s"

[rankers.random-rerank]
kind = "random"
first_stage = "bm25s"
depth = 30

[rankers.minilm-rerank]
kind = "bi-encoder"
max_length = 128
first_stage = "bm25s"
depth = 30

[rankers.oracle-rerank]
kind = "oracle"
first_stage = "bm25s"
depth = 30
"""

QUESTION = "do statins reduce mortality in heart disease patients"


@pytest.fixture(scope="module")
def runner(scifact_sample, rankbench_home, tmp_path_factory):
    path = tmp_path_factory.mktemp("rag") / "bench.toml"
    path.write_text(CONFIG.format(sample=scifact_sample))
    return Runner(load_config(path), path.parent / "reports", cache=Cache(rankbench_home), progress=False,
                  log=lambda m: None)


def prepared(runner, name):
    pipe = runner.pipeline(name)
    pipe.prepare(runner.dataset("sample"))
    return pipe


def test_the_context_comes_from_the_chain_with_its_scores(runner):
    pipe = prepared(runner, "random-rerank")
    rag = RagPipeline(pipe, budget=300, tokenizer=words)
    res = rag.context(QUESTION)
    found = pipe.search(QUESTION, k=30)
    assert res.candidates == len(found.hits) == 30
    # the passages are the chain's top hits in order, with the reranker's scores and the first stage's
    by_id = {h.doc_id: h for h in found.hits}
    assert [p.doc_id for p in res.passages] == [h.doc_id for h in found.hits][: len(res.passages)]
    for p in res.passages:
        h = by_id[p.doc_id]
        assert p.raw_score == p.score == h.score and p.retrieval_score == h.first_stage_score is not None
        assert p.rank == h.rank and (p.text == h.text or p.truncated)
    assert 0 < res.context.tokens <= 300 and res.score_mode == "raw"
    assert {"search", "context", "random-rerank", "bm25s"} <= set(res.timings_ms)


def test_overrides_replace_values_falsy_ones_included(runner):
    rag = RagPipeline(prepared(runner, "random-rerank"), budget=300, tokenizer=words, threshold=0.9, top_k=3)
    assert len(rag.context(QUESTION).passages) <= 3
    everything = rag.context(QUESTION, threshold=0.0, top_k=None, budget=None)
    scores = [p.score for p in everything.passages]
    assert len(scores) == sum(1 for s in scores if s >= 0.0) and len(scores) > 3
    assert rag.context(QUESTION, top_k=0).passages == ()
    assert rag.context(QUESTION, budget=0).passages == ()
    assert rag.context(QUESTION, dedupe=False).candidates == 30
    with pytest.raises(ConfigError, match="unknown context option.*budgett"):
        rag.context(QUESTION, budgett=10)


def test_a_score_function_maps_scores_before_the_threshold(runner):
    rag = RagPipeline(prepared(runner, "random-rerank"), budget=None, tokenizer=words,
                      score=lambda s: -s, score_name="negated")
    every = rag.context(QUESTION)
    assert every.score_mode == "negated" and len(every.passages) == 30
    assert all(p.score == -p.raw_score for p in every.passages)
    cut = sorted(p.score for p in every.passages)[15]
    res = rag.context(QUESTION, threshold=cut)
    assert len(res.passages) == 15 and all(p.score >= cut for p in res.passages)
    assert res.context.dropped["below_threshold"] == 15


def test_async_gives_the_same_context(runner):
    rag = RagPipeline(prepared(runner, "random-rerank"), budget=200, tokenizer=words)

    async def both():
        return await asyncio.gather(rag.acontext(QUESTION), rag.acontext(QUESTION, top_k=2, budget=None))

    a, b = asyncio.run(both())
    assert a.text == rag.context(QUESTION).text and len(b.passages) == 2


def test_generation_takes_any_callable_and_offline_fails_at_once(runner):
    from rag import openai_generator

    rag = RagPipeline(prepared(runner, "random-rerank"), budget=200, tokenizer=words)
    seen = []
    ans = rag.answer(QUESTION, lambda prompt: (seen.append(prompt), "statins help [1]")[1])
    assert ans.text == "statins help [1]" and ans.result.text in seen[0] and QUESTION in seen[0]
    # nothing listens on this port: a clear error within the probe's timeout, not a hang
    t0 = time.perf_counter()
    with pytest.raises(RankerUnavailable, match="cannot be reached"):
        rag.answer(QUESTION, openai_generator("gpt-x", base_url="http://127.0.0.1:9/v1", api_key="k"))
    assert time.perf_counter() - t0 < 5
    with pytest.raises(ConfigError, match="generate"):
        rag.answer(QUESTION, "not callable")


def test_unprepared_and_unsearchable_pipelines_are_refused(runner):
    fresh = Runner(runner.config, runner.reports, cache=runner.cache, progress=False, log=lambda m: None)
    with pytest.raises(RankerUnavailable, match="not prepared"):
        RagPipeline(fresh.pipeline("bm25s"))
    with pytest.raises(RankerUnavailable, match="oracle-rerank"):      # it knows only the dataset's queries
        RagPipeline(prepared(runner, "oracle-rerank"))


@pytest.mark.models
def test_a_hugging_face_tokenizer_counts_the_budget(runner):
    tok = token_counter("sentence-transformers/all-MiniLM-L6-v2")
    rag = RagPipeline(prepared(runner, "minilm-rerank"), budget=256, tokenizer=tok)
    res = rag.context(QUESTION)
    assert res.context.tokenizer == "sentence-transformers/all-MiniLM-L6-v2"
    assert 200 < res.context.tokens <= 256
    assert tok.count(res.text) <= 256          # the joined text, counted afresh, fits too
    assert sum(p.tokens for p in res.passages) == res.context.tokens     # a blank line counts no token
    # the bi-encoder's scores are cosines, kept as they are
    assert all(-1 <= p.score <= 1 for p in res.passages)
    with pytest.raises(RankerUnavailable, match="tokenizer 'no/such-tokenizer'"):
        token_counter("no/such-tokenizer")



# -- context measures ------------------------------------------------------------------------------

def test_context_measures_on_real_qrels(runner):
    from rag.measures import TokenMemo, context_values, ideal_candidates

    ds = runner.dataset("sample")
    qrels = ds.qrels()
    run = runner.get_run("bm25s", ds, 50, runner.config.settings)[0]
    memo = TokenMemo(WORDS)
    docs = ds.docs(sorted({d for q in qrels for d in run.get(q, {})} | {d for q in qrels for d in qrels[q]}))
    seen_gain_below_one = False
    for q in sorted(qrels)[:15]:
        grades = qrels[q]
        ideal = ideal_candidates(grades, docs, memo)
        ranked = sorted(run[q].items(), key=lambda kv: (-kv[1], kv[0]))
        cands = [Candidate(d, docs[d].text, s, docs[d].title, rank=i) for i, (d, s) in enumerate(ranked, 1) if d != q]
        prev = -1.0
        for b in (128, 256, 512, 1024):
            v = context_values(cands, grades, 1, ContextSpec(budget=b), memo, ideal)
            assert 0 <= v[f"CtxPrecision@{b}"] <= 1 and 0 <= v[f"CtxGain@{b}"] <= 1
            assert v[f"CtxRecall@{b}"] >= prev       # a bigger context never holds fewer relevant passages
            prev = v[f"CtxRecall@{b}"]
            seen_gain_below_one |= v[f"CtxGain@{b}"] < 1
            # the ideal ranking itself scores the full gain at every budget where anything fits
            best = context_values(ideal, grades, 1, ContextSpec(budget=b), memo, ideal)
            assert best[f"CtxGain@{b}"] in (0.0, 1.0) and best[f"CtxPrecision@{b}"] in (0.0, 1.0)
        # counted by hand: the 512-token context's relevant passages
        ctx = build_context(cands, ContextSpec(budget=512), memo)
        rel = {d for d, g in grades.items() if g >= 1}
        hand = sum(1 for p in ctx.passages if p.doc_id in rel)
        v = context_values(cands, grades, 1, ContextSpec(budget=512), memo, ideal)
        assert v["CtxRecall@512"] == hand / len(rel)
        assert v["CtxPrecision@512"] == (hand / len(ctx.passages) if ctx.passages else 0.0)
    assert seen_gain_below_one                      # BM25 is not the ideal ranking everywhere


@pytest.mark.models
def test_the_readme_langchain_snippet_prints_what_it_shows(rankbench_home):
    """The README's RAG section: its Python block, run as a script from the project root, prints
    its text block (real MiniLM scores through LangChain's own Document objects)."""
    import os
    import re
    import subprocess
    import sys

    from conftest import ROOT

    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index("## RAG\n")
    section = text[start:text.index("\n## ", start + 1)]
    (code,) = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    (shown,) = re.findall(r"```text\n(.*?)```", section, flags=re.S)
    env = {**os.environ, "RANKBENCH_HOME": str(rankbench_home)}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout == shown


@pytest.mark.golden
def test_the_committed_rag_and_calibration_reports_are_their_json():
    """reports/rag.md and reports/calibration.md are what their committed JSON gives (regenerate
    with rankbench rag --report / rankbench calibrate --report after changing either)."""
    import json

    from conftest import ROOT
    from rag.calibration_report import markdown as calibration_markdown
    from rag.rag_report import markdown as rag_markdown

    reports = ROOT / "reports"
    config = load_config(ROOT / "bench.toml")
    data = json.loads((reports / "results" / "rag.json").read_text())
    assert (reports / "rag.md").read_text() == rag_markdown(data, config.settings), "rag.md is stale"
    cal = json.loads((reports / "results" / "calibration.json").read_text())
    plots = {r["model"]: f"plots/calibration-{r['model']}.png" for r in cal["rows"]}
    assert (reports / "calibration.md").read_text() == calibration_markdown(cal, plots), "calibration.md is stale"
    assert all((reports / p).exists() for p in plots.values())
    # what the report says comes from the data: the DL 2020 threshold row, for one
    dl20 = data["datasets"]["dl20"]
    assert f"threshold {dl20['threshold']['threshold']:.3f}" in (reports / "rag.md").read_text()
