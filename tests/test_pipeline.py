"""The Pipeline contract: every ranker kind of bench.toml answers a query text that is in no
dataset, through its whole chain (first stages, fusion members, ONNX exports), with hits that are
real documents and a timing for every stage; kinds that only know their dataset's own queries say
so. Live ranking agrees with the benchmark's cached runs, and nothing trains or exports inside
``rank``."""
from __future__ import annotations

import math

import pytest

from conftest import ROOT
from harness.cache import Cache
from harness.config import load_config, parse_config
from harness.errors import RankerUnavailable
from harness.files import read_toml
from harness.pipeline import SEARCH_QID
from harness.runner import Runner

NEW_QUERY = "how do bacteria in hospitals become resistant to antibiotics"

CONFIG = """
[settings]
k = 50
latency_queries = 0

[datasets]
sample = "local:{sample}"

[rankers.bm25s]
kind = "bm25"
backend = "bm25s"

[rankers.bm25]
kind = "bm25"
backend = "pyserini"

[rankers.random]
kind = "random"
seed = 1

[rankers.random-rerank]
kind = "random"
first_stage = "bm25s"
depth = 20

[rankers.oracle-rerank]
kind = "oracle"
first_stage = "bm25s"
depth = 20

[rankers.fusion-rrf]
kind = "fusion"
members = {{ bm25s = 1.0, random = 0.5 }}
normalize = "rrf"

[rankers.fusion-rerank]
kind = "fusion"
members = {{ bm25s = 1.0, random = 1.0 }}
first_stage = "bm25s"
depth = 20

[rankers.minilm]
kind = "bi-encoder"
max_length = 128

[rankers.ce]
kind = "cross-encoder"
model = "{cross_encoder}"
max_length = 96
first_stage = "bm25s"
depth = 20

[rankers.ce-int8]
kind = "onnx"
source = "ce"
variant = "int8-dynamic"
first_stage = "bm25s"
depth = 20

[rankers.minilm-onnx]
kind = "onnx"
source = "minilm"
variant = "fp32"

[rankers.minilm-rerank]
kind = "bi-encoder"
max_length = 128
first_stage = "bm25s"
depth = 20

[rankers.minilm-onnx-rerank]
kind = "onnx"
source = "minilm"
variant = "fp32"
first_stage = "bm25s"
depth = 20

[rankers.hybrid]
kind = "fusion"
members = {{ bm25s = 1.0, minilm = 1.0 }}
"""

# kind -> the rankers of CONFIG that exercise it (the contract covers each)
SEARCH_CASES = {
    "bm25": [pytest.param("bm25s"), pytest.param("bm25", marks=pytest.mark.jvm)],
    "random": [pytest.param("random"), pytest.param("random-rerank")],
    "fusion": [pytest.param("fusion-rrf"), pytest.param("fusion-rerank"),
               pytest.param("hybrid", marks=pytest.mark.models)],
    "bi-encoder": [pytest.param("minilm", marks=pytest.mark.models),
                   pytest.param("minilm-rerank", marks=pytest.mark.models)],
    "cross-encoder": [pytest.param("ce", marks=pytest.mark.models)],
    "onnx": [pytest.param("ce-int8", marks=pytest.mark.models), pytest.param("minilm-onnx", marks=pytest.mark.models)],
}
# kinds that only know their dataset's own queries: search refuses them, saying why
REFUSING = {"run", "oracle"}


def test_every_kind_of_bench_toml_has_a_search_case():
    raw = read_toml(ROOT / "bench.toml")
    kinds = {t["kind"] for t in raw["rankers"].values() if "kind" in t}
    assert kinds <= set(SEARCH_CASES) | REFUSING, kinds - set(SEARCH_CASES) - REFUSING


@pytest.fixture(scope="module")
def runner(scifact_sample, rankbench_home, request, tmp_path_factory):
    # the tiny cross-encoder only when a models case runs (the fast loop has no torch)
    ce = "/nonexistent"
    if any("models" in {m.name for m in item.iter_markers()} for item in request.session.items
           if item.module is request.module):
        ce = str(request.getfixturevalue("tiny_cross_encoders")["segment-cosine"])
    text = CONFIG.format(sample=scifact_sample, cross_encoder=ce)
    path = tmp_path_factory.mktemp("pipeline") / "bench.toml"
    path.write_text(text)
    return Runner(load_config(path), path.parent / "reports", cache=Cache(rankbench_home), progress=False,
                  log=lambda m: None)


@pytest.mark.parametrize("name", [p for cases in SEARCH_CASES.values() for p in cases])
def test_search_answers_a_query_text_in_no_dataset(runner, name):
    ds = runner.dataset("sample")
    assert NEW_QUERY not in ds.queries().values()
    pipe = runner.pipeline(name)
    pipe.prepare(ds)
    result = pipe.search(NEW_QUERY, k=5)

    corpus = ds.corpus()
    assert result.query == NEW_QUERY
    assert 1 <= len(result.hits) <= 5
    assert [h.rank for h in result.hits] == list(range(1, len(result.hits) + 1))
    scores = [h.score for h in result.hits]
    assert all(isinstance(s, float) and math.isfinite(s) for s in scores)
    assert scores == sorted(scores, reverse=True)
    for h in result.hits:
        assert h.doc_id in corpus and h.text == corpus[h.doc_id].text and h.title == corpus[h.doc_id].title
    # every stage of the chain, and every member of a fusion, was timed
    assert set(pipe.stage_names()) | set(pipe.members) <= set(result.timings_ms)
    assert all(ms >= 0 for ms in result.timings_ms.values())
    assert result.total_ms >= max(result.timings_ms.values())
    # a reranker orders only what its first stage found for this text
    if pipe.first is not None:
        found = pipe.first.rank({SEARCH_QID: NEW_QUERY}, pipe.depth)[SEARCH_QID]
        assert {h.doc_id for h in result.hits} <= set(found)
    # deterministic
    assert pipe.search(NEW_QUERY, k=5).hits == result.hits


@pytest.mark.parametrize("name", ["bm25s", "fusion-rrf", "fusion-rerank", "random-rerank"])
def test_live_ranking_agrees_with_the_benchmarks_cached_runs(runner, name):
    """A fusion in a benchmark fuses its members' cached runs; live, it ranks through every
    member: the same queries get the same ranking either way."""
    ds = runner.dataset("sample")
    settings = runner.config.settings
    cached, _, _ = runner.get_run(name, ds, settings.k, settings)
    queries = dict(list(ds.queries().items())[:6])
    pipe = runner.pipeline(name)
    pipe.prepare(ds)
    live = pipe.rank(queries, settings.k)
    for q in queries:
        assert list(live[q]) == list(cached.get(q, {})), q
        assert live[q] == pytest.approx(cached.get(q, {}))
    # a dataset's query asked under another id is ranked live, all the same (random orders are
    # seeded by query id, so only a text-determined chain can show it)
    if name == "bm25s":
        q = next(iter(queries))
        again = pipe.rank({"not-a-dataset-id": queries[q]}, settings.k)["not-a-dataset-id"]
        assert again == live[q]


def test_a_ranker_prepared_only_to_rerank_is_prepared_again_to_search(runner):
    """A fusion member that scored candidates was prepared without its corpus index; the same
    ranker searching the corpus later (another fusion's member, or its own pipeline) prepares it."""
    fresh = Runner(runner.config, runner.reports, cache=runner.cache, progress=False, log=lambda m: None)
    ds = fresh.dataset("sample")
    fresh.pipeline("fusion-rerank").prepare(ds)          # random prepared to rerank only
    assert fresh.pipeline("random").dataset is None
    fresh.pipeline("fusion-rrf").prepare(ds)             # random searches the corpus here
    assert fresh.pipeline("random").dataset is ds
    assert fresh.pipeline("fusion-rrf").search(NEW_QUERY, k=5).hits
    assert fresh.pipeline("fusion-rerank").search(NEW_QUERY, k=5).hits      # and it still reranks


def test_a_pipeline_searches_a_corpus_of_your_own_documents(runner):
    from harness.data import Corpus

    docs = Corpus({"a": "Statins lower cholesterol and the risk of heart attacks.",
                   "b": {"title": "Antibiotics", "text": "Bacteria in hospitals become resistant to antibiotics."},
                   "c": "The weather in Paris is mild in spring."}, name="mine")
    for name in ("bm25s", "fusion-rrf", "random-rerank"):
        pipe = runner.pipeline(name)
        pipe.prepare(docs)
        hits = pipe.search(NEW_QUERY, k=2).hits
        assert hits and {h.doc_id for h in hits} <= {"a", "b", "c"}
        if name == "bm25s":
            assert [h.doc_id for h in hits] == ["b"] and hits[0].title == "Antibiotics"
    # the same words in another corpus: an index of its own (cached by content)
    other = Corpus([{"_id": "x", "text": "resistant bacteria"}, {"_id": "y", "text": "spring in Paris"}])
    runner.pipeline("bm25s").prepare(other)
    assert [h.doc_id for h in runner.pipeline("bm25s").search(NEW_QUERY).hits] == ["x"]


@pytest.mark.parametrize("docs, message", [
    ({}, "no documents"),
    ({"a b": "x"}, "id 'a b' contains whitespace"),
    ([{"text": "x"}], r"document 1 has no \"_id\""),
    (["x"], "document 1 is a str"),
    ({"a": {"title": "t"}}, "a document is a text, or a record with a \"text\" string"),
    ([{"_id": "a", "text": "x"}, {"_id": "a", "text": "y"}], "id 'a' appears twice"),
])
def test_a_bad_corpus_says_what_and_where(docs, message):
    from harness.data import Corpus
    from harness.errors import DataError

    with pytest.raises(DataError, match=message):
        Corpus(docs)


def test_kinds_that_only_know_their_own_queries_refuse_a_new_text(toy):
    runner = Runner(load_config(toy.config), toy.reports, cache=Cache(toy.root / "home"), progress=False,
                    log=lambda m: None)
    ds = runner.dataset("toy")
    for name, kind in (("first", "run"), ("oracle-first", "oracle")):
        pipe = runner.pipeline(name)
        pipe.prepare(ds)
        with pytest.raises(RankerUnavailable, match=rf"ranker {name} \({kind}\) only knows its dataset's own queries"):
            pipe.search(NEW_QUERY)
        qid, text = next(iter(ds.queries().items()))     # its own queries it still ranks
        assert pipe.rank({qid: text}, 10)[qid]


def test_search_input_errors_say_what(runner):
    fresh = Runner(runner.config, runner.reports, cache=runner.cache, progress=False, log=lambda m: None)
    with pytest.raises(RankerUnavailable, match=r"pipeline random is not prepared: call prepare\(dataset\) first"):
        fresh.pipeline("random").search(NEW_QUERY)
    pipe = runner.pipeline("bm25s")
    pipe.prepare(runner.dataset("sample"))
    for bad in ("", "   ", None, 3):
        with pytest.raises(ValueError, match="non-empty string"):
            pipe.search(bad)
    for k in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="positive integer"):
            pipe.search(NEW_QUERY, k=k)


def test_a_chain_that_cannot_rank_the_dataset_is_refused_at_prepare(toy):
    config = parse_config({"datasets": {"toy": "local:data/toy"},
                           "rankers": {"first": {"kind": "run", "run": "nope"}}}, toy.config)
    runner = Runner(config, toy.reports, cache=Cache(toy.root / "home"), progress=False, log=lambda m: None)
    with pytest.raises(RankerUnavailable, match="ranker first cannot rank toy: toy ships no run named 'nope'"):
        runner.pipeline("first").prepare(runner.dataset("toy"))


@pytest.mark.models
def test_nothing_is_exported_inside_rank(runner):
    """An ONNX model exported on first use inside scoring would be timed as ranking: the export
    belongs to the prepare phase, and asking for it while ranking is a PrepareError."""
    from harness.config import with_ranker
    from rankers.base import PrepareError

    config = with_ranker(runner.config, "ce-int8-per-tensor", "onnx",
                         {"source": "ce", "variant": "int8-dynamic", "embeddings": "per-tensor",
                          "first_stage": "bm25s", "depth": 20})
    fresh = Runner(config, runner.reports, cache=runner.cache, progress=False, log=lambda m: None)
    ds = fresh.dataset("sample")
    pipe = fresh.pipeline("ce-int8-per-tensor")
    assert fresh.cache.get("onnx", pipe.ranker._key()) is None      # not exported yet
    fresh.pipeline("bm25s").prepare(ds)
    cands = fresh.pipeline("bm25s").rank({SEARCH_QID: NEW_QUERY}, 20)
    pipe.ranker.inner.dataset = ds                                   # skip the prepare phase
    with pytest.raises(PrepareError, match="ONNX export of ranker ce-int8-per-tensor was asked for while "
                                           "ranker ce-int8-per-tensor was ranking"):
        pipe.rank_stage({SEARCH_QID: NEW_QUERY}, cands, 5)
    pipe.prepare(ds)                                                 # the prepare phase exports it
    assert fresh.cache.get("onnx", pipe.ranker._key()) is not None
    assert pipe.search(NEW_QUERY, k=3).hits


@pytest.mark.models
@pytest.mark.parametrize("name", ["minilm-rerank", "minilm-onnx-rerank"])
def test_a_bi_encoder_reranker_is_timed_online_and_indexed(runner, name):
    """Its latency is measured twice on the same queries: online, encoding each query's
    candidates as the run does, then indexed, with the embeddings the online pass computed, so
    only the query is encoded; the indexed pass ranks exactly as the online one."""
    import dataclasses

    ds = runner.dataset("sample")
    settings = dataclasses.replace(runner.config.settings, latency_queries=6, latency_warmup=1)
    pipe = runner.pipeline(name)
    encoder = pipe.indexed_reranker()
    assert encoder is not None and runner.pipeline("random-rerank").indexed_reranker() is None
    sizes = []
    real = encoder._encode
    encoder._encode = lambda texts, progress: (sizes.append(len(texts)), real(texts, progress))[1]
    try:
        online, indexed = runner.measure_latency(name, ds, 10, settings)
    finally:
        del encoder._encode
    assert online["n"] == indexed["n"] == 6 and online["warmup"] == indexed["warmup"] == 1
    assert "only the query encoded online" in indexed["scope"] and "ahead" not in online["scope"]
    # online: the query, then its 20 candidates, per call; indexed: the query alone
    assert sizes[:14:2] == [1] * 7 and all(n == 20 for n in sizes[1:14:2])
    assert sizes[14:] == [1] * 7
    assert indexed["p50"] > 0

    queries = dict(list(ds.queries().items())[:4])
    with encoder.recording() as kept:
        live = pipe.rank(queries, 10)
    assert len(kept) >= 20
    with encoder.indexed(kept):
        again = pipe.rank(queries, 10)
    for q in queries:
        assert list(again[q]) == list(live[q])
        assert all(again[q][d] == pytest.approx(live[q][d], abs=1e-6) for d in live[q])
    assert encoder._indexed is None            # restored on leaving


def test_a_ranker_prepared_for_another_dataset_since_is_prepared_again(runner, tmp_path):
    """Rankers hold one dataset at a time: a pipeline prepared on A, then on B, then on A again
    searches A's corpus (not B's index); ranking on a dataset it no longer holds is an error."""
    from harness.data import Corpus

    ds = runner.dataset("sample")
    other = Corpus({"x1": "radio waves in the ionosphere", "x2": "bread and butter recipes"}, name="other")
    pipe = runner.pipeline("bm25s")
    pipe.prepare(ds)
    first = pipe.search(NEW_QUERY, k=3).hits
    pipe.prepare(other)
    assert {h.doc_id for h in pipe.search("radio ionosphere", k=2).hits} <= {"x1", "x2"}
    pipe.prepare(ds)
    assert pipe.search(NEW_QUERY, k=3).hits == first          # A's index again, not B's
    random_rerank = runner.pipeline("random-rerank")
    random_rerank.prepare(ds)
    runner.pipeline("bm25s").prepare(other)                    # the shared first stage moves to B
    with pytest.raises(RankerUnavailable, match="bm25s is prepared for other now"):
        random_rerank.rank({"q": NEW_QUERY}, 5)
    random_rerank.prepare(ds)
    assert random_rerank.rank({"q": NEW_QUERY}, 5)["q"]
