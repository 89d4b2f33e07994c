"""The framework adapters, each against the real package: LangChain's compressor and retriever,
LlamaIndex's node postprocessor, Haystack's component (to_dict/from_dict), PyTerrier's
Transformer. Each builds the framework's own objects from a real SciFact slice, reranks BM25's
candidates and gets the scores and order rankbench's pipeline gives; falsy overrides are kept;
the same adapters work against a running rankbench serve on 127.0.0.1."""
from __future__ import annotations

import dataclasses

import pytest

from harness.cache import Cache
from harness.config import parse_config, with_ranker
from harness.runner import Runner
from test_serving import KEY, Server, TermOverlap

QUERY = "do statins reduce mortality in heart disease patients"


@pytest.fixture(scope="module")
def setup(scifact_sample, rankbench_home, tmp_path_factory):
    folder = tmp_path_factory.mktemp("adapters")
    config = parse_config({"datasets": {"sample": f"local:{scifact_sample}"},
                           "rankers": {"bm25s": {"kind": "bm25", "backend": "bm25s"}}}, folder / "bench.toml")
    config = with_ranker(config, "overlap-rerank", TermOverlap, {"first_stage": "bm25s", "depth": 20})
    runner = Runner(config, folder / "reports", cache=Cache(rankbench_home), progress=False, log=lambda m: None)
    ds = runner.dataset("sample")
    first = runner.pipeline("bm25s")
    first.prepare(ds)
    # the text a framework hands over: title and abstract, as rankbench's rankers read a document
    cands = [dataclasses.replace(h, text=ds.docs([h.doc_id])[h.doc_id].joined()) for h in first.search(QUERY, k=20).hits]
    pipe = runner.pipeline("overlap-rerank")
    pipe.prepare(ds)
    run = pipe.rank_stage({"q": QUERY}, {"q": {h.doc_id: h.score for h in cands}}, 20)["q"]
    # rankbench's own order: by score, ties by the candidates' order (as the adapters break them)
    pos = {h.doc_id: i for i, h in enumerate(cands)}
    expected = sorted(run.items(), key=lambda kv: (-kv[1], pos[kv[0]]))
    return config, cands, expected, pipe


def test_langchain_compressor_keeps_the_scores(setup):
    from langchain_core.documents import Document

    from rag.adapters.langchain import RankbenchReranker

    config, cands, expected, _ = setup
    docs = [Document(page_content=h.text, id=h.doc_id, metadata={"bm25": h.score}) for h in cands]
    reranker = RankbenchReranker(target="overlap-rerank", config=config, top_n=5)
    got = reranker.compress_documents(docs, QUERY)
    assert [d.id for d in got] == [d for d, _ in expected[:5]]
    assert [d.metadata["relevance_score"] for d in got] == pytest.approx([s for _, s in expected[:5]])
    assert all("bm25" in d.metadata for d in got)            # the retriever's metadata is kept
    # falsy overrides are values, not "unset"
    assert reranker.compress_documents(docs, QUERY, top_n=0) == []
    floor = expected[2][1]
    kept = reranker.compress_documents(docs, QUERY, top_n=None, threshold=floor)
    assert [d.id for d in kept] == [d for d, s in expected if s >= floor]
    assert all(0 < d.metadata["relevance_score"] < 1 for d in reranker.compress_documents(docs, QUERY, scale_score=True))


def test_langchain_retriever_and_a_runnable_chain(setup):
    from rag.adapters.langchain import RankbenchRetriever

    config, _, _, pipe = setup
    retriever = RankbenchRetriever(target="overlap-rerank", dataset="sample", config=config, k=4)
    docs = retriever.invoke(QUERY)            # the Runnable interface
    hits = pipe.search(QUERY, k=4).hits       # rankbench's own chain on the same corpus
    assert [d.id for d in docs] == [h.doc_id for h in hits]
    assert [d.metadata["score"] for d in docs] == [h.score for h in hits]
    assert [d.metadata["rank"] for d in docs] == [1, 2, 3, 4] and docs[0].page_content == hits[0].text


def test_llamaindex_postprocessor_keeps_the_retrieval_score(setup):
    from llama_index.core.schema import NodeWithScore, TextNode

    from rag.adapters.llamaindex import RankbenchRerank

    config, cands, expected, _ = setup
    nodes = [NodeWithScore(node=TextNode(text=h.text, id_=h.doc_id), score=h.score) for h in cands]
    post = RankbenchRerank(target="overlap-rerank", config=config, top_n=5)
    got = post.postprocess_nodes(nodes, query_str=QUERY)
    assert [n.node.node_id for n in got] == [d for d, _ in expected[:5]]
    assert [n.score for n in got] == pytest.approx([s for _, s in expected[:5]])
    bm25 = {h.doc_id: h.score for h in cands}
    assert all(n.node.metadata["retrieval_score"] == bm25[n.node.node_id] for n in got)
    post0 = RankbenchRerank(target="overlap-rerank", config=config, top_n=0)
    assert post0.postprocess_nodes(nodes, query_str=QUERY) == []


def test_haystack_component_round_trips_and_honours_falsy_overrides(setup):
    from haystack import Document, Pipeline

    from rag.adapters.haystack import RankbenchRanker

    config, cands, expected, _ = setup
    docs = [Document(id=h.doc_id, content=h.text, meta={"title": h.title}) for h in cands]
    ranker = RankbenchRanker(target="overlap-rerank", top_k=5)
    data = ranker.to_dict()
    back = RankbenchRanker.from_dict(data)
    assert back.to_dict() == data and data["init_parameters"]["top_k"] == 5
    back.config = config                                # a Config object, for this test's user scorer
    got = back.run(query=QUERY, documents=docs)["documents"]
    assert [d.id for d in got] == [d for d, _ in expected[:5]]
    assert [d.score for d in got] == pytest.approx([s for _, s in expected[:5]])
    assert back.run(query=QUERY, documents=docs, top_k=0)["documents"] == []
    zero = back.run(query=QUERY, documents=docs, top_k=len(docs), score_threshold=0.0)["documents"]
    assert len(zero) == len(docs)                      # 0.0 is a threshold every overlap passes
    assert back.run(query=QUERY, documents=docs, scale_score=False)["documents"][0].score == pytest.approx(expected[0][1])
    # inside a Haystack pipeline
    pipe = Pipeline()
    pipe.add_component("ranker", back)
    out = pipe.run({"ranker": {"query": QUERY, "documents": docs, "top_k": 3}})
    assert [d.id for d in out["ranker"]["documents"]] == [d for d, _ in expected[:3]]


def test_pyterrier_transformer_scores_a_result_frame(setup):
    import pandas as pd

    from rag.adapters.pyterrier import RankbenchReranker

    config, cands, expected, _ = setup
    frame = pd.DataFrame({"qid": "1", "query": QUERY, "docno": [h.doc_id for h in cands],
                          "text": [h.text for h in cands], "score": [h.score for h in cands]})
    res = RankbenchReranker("overlap-rerank", config=config).transform(frame)
    want = dict(expected)
    assert list(res["rank"]) == list(range(len(cands)))       # PyTerrier's ranks start at 0
    assert list(res["docno"]) == [d for d, _ in expected]
    assert dict(zip(res["docno"], res["score"])) == pytest.approx(want)
    assert list(res["score"]) == sorted(res["score"], reverse=True)
    with pytest.raises(KeyError, match="no 'text' column"):
        RankbenchReranker("overlap-rerank", config=config).transform(frame.drop(columns=["text"]))


def test_every_adapter_works_against_a_running_server(setup, toy, rankbench_home):
    """The same adapters with a URL: the server's /rerank gives the scores."""
    from langchain_core.documents import Document

    from rag.adapters.haystack import RankbenchRanker
    from rag.adapters.langchain import RankbenchReranker
    from serving.app import create_app
    from serving.service import RankService, ServeSettings

    config, cands, expected, _ = setup
    service = RankService(config, "overlap-rerank", cache=Cache(rankbench_home), settings=ServeSettings(),
                          log=lambda m: None)
    server = Server(create_app(service, api_key=KEY))
    try:
        docs = [Document(page_content=h.text, id=h.doc_id) for h in cands]
        got = RankbenchReranker(target=server.url, api_key=KEY, top_n=5).compress_documents(docs, QUERY)
        assert [d.id for d in got] == [d for d, _ in expected[:5]]
        assert [d.metadata["relevance_score"] for d in got] == pytest.approx([s for _, s in expected[:5]])
        from haystack import Document as HDoc

        hs = RankbenchRanker(target=server.url, api_key=KEY, top_k=3).run(
            query=QUERY, documents=[HDoc(id=h.doc_id, content=h.text) for h in cands])["documents"]
        assert [d.id for d in hs] == [d for d, _ in expected[:3]]
        from harness.errors import RankerUnavailable

        with pytest.raises(RankerUnavailable, match="401"):
            RankbenchReranker(target=server.url, api_key="wrong").compress_documents(docs, QUERY)
    finally:
        server.stop()
