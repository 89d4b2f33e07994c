"""Score fusion: normalisation, cached members, reranking mode, config rules."""
from __future__ import annotations

import json

import pytest

from harness.cache import Cache
from harness.errors import ConfigError
from harness.results import result_path
from harness.runner import Runner
from rankers.fusion import fuse, normalise
from test_runner import make_config


def test_normalise_and_fuse_by_hand():
    assert normalise({"a": 3.0, "b": 1.0}, "minmax") == {"a": 1.0, "b": 0.0}
    z = normalise({"a": 3.0, "b": 1.0}, "zscore")
    assert z == pytest.approx({"a": 1.0, "b": -1.0})
    assert normalise({"a": 2.0, "b": 2.0}, "zscore") == {"a": 0.0, "b": 0.0}   # no spread: no say
    assert normalise({"x": 0.1, "y": 0.9}, "rrf", 60) == {"y": 1 / 61, "x": 1 / 62}
    runs = {"m1": {"q": {"a": 3.0, "b": 2.0, "c": 1.0}}, "m2": {"q": {"c": 9.0, "b": 5.0}}}
    # minmax: m1 a=1 b=.5 c=0; m2 c=1 b=0, a missing -> m2's floor 0
    fused = fuse(runs, {"m1": 1.0, "m2": 2.0}, "minmax", k=10)
    assert fused["q"] == pytest.approx({"c": 2.0, "a": 1.0, "b": 0.5})
    assert list(fused["q"]) == ["c", "a", "b"]
    assert list(fuse(runs, {"m1": 1.0, "m2": 2.0}, "minmax", k=2)["q"]) == ["c", "a"]


@pytest.fixture
def fusion_config(scifact_sample):
    return make_config(
        {"sample": f"local:{scifact_sample}"},
        {"bm25s": {"kind": "bm25", "backend": "bm25s"},
         "orc": {"kind": "oracle", "first_stage": "bm25s", "depth": 20},
         "rnd": {"kind": "random", "first_stage": "bm25s", "depth": 20},
         "fused": {"kind": "fusion", "members": {"orc": 1.0, "rnd": 1.0}},
         "orc-heavy": {"kind": "fusion", "members": {"orc": 5.0, "rnd": 1.0}, "normalize": "minmax"},
         "refused": {"kind": "fusion", "members": {"orc": 1.0, "rnd": 1.0}, "first_stage": "bm25s",
                     "depth": 20}},
        {"s": {"rankers": ["bm25s", "orc", "rnd", "fused", "orc-heavy", "refused"], "datasets": ["sample"],
               "students": {"rnd": "fused"}}})


def test_fusion_sits_between_its_members_and_reuses_their_cached_runs(fusion_config, tmp_path, monkeypatch):
    reports = tmp_path / "reports"
    cache = Cache(tmp_path / "cache")   # its own: other tests count fresh runs in the shared one
    runner = Runner(fusion_config, reports, cache=cache, progress=False)
    out = {o.ranker: o for o in runner.run_suite("s")}
    assert all(o.status == "ran" for o in out.values()), {r: o.message for r, o in out.items()}

    def ndcg(r):
        return json.loads(result_path(reports, "s", r, "sample").read_text())["measures"]["aggregate"]["nDCG@10"]

    assert ndcg("rnd") < ndcg("fused") < ndcg("orc")
    assert ndcg("fused") <= ndcg("orc-heavy") <= ndcg("orc")
    # reranking the same candidates, each member's final stage scores them: same figures
    assert ndcg("refused") == pytest.approx(ndcg("fused"), abs=1e-9)
    eff = json.loads(result_path(reports, "s", "fused", "sample").read_text())["efficiency"]
    members = eff["fusion"]["members"]
    assert set(members) == {"orc", "rnd"} and eff["rank_s"] == pytest.approx(
        sum(m["rank_s"] for m in members.values()), abs=1e-3)
    assert eff["latency_ms"]["n"] == 3
    orc = json.loads(result_path(reports, "s", "orc", "sample").read_text())["efficiency"]
    assert eff["pairs"] == orc["pairs"]            # the members score the same candidates
    assert eff["pipeline_rank_s"] == pytest.approx(eff["rank_s"] + orc["first_stage"]["rank_s"], abs=1e-3)

    # the report sets a "student" beside its "teacher": share kept and speed-up, against the bar
    from harness.report import build_report

    text = build_report(fusion_config, reports, "s")
    row = next(line for line in text.splitlines() if line.startswith("| rnd | fused | sample |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[6] == f"{100 * ndcg('rnd') / ndcg('fused'):.1f}%"
    kept = ndcg("rnd") / ndcg("fused")
    assert cells[-1].startswith(f"no: kept {100 * (0.97 - kept):.1f} points short")    # and by how much
    assert cells[9].endswith("x")
    # a teacher measured on another machine gives no speed-up: pairs/s compare on one machine only
    fused_path = result_path(reports, "s", "fused", "sample")
    saved = fused_path.read_text()
    moved = json.loads(saved)
    assert moved["efficiency"]["machine"] == moved["provenance"]["machine"]["id"]
    moved["efficiency"]["machine"] = "another-machine"    # a cached run keeps the machine that timed it
    fused_path.write_text(json.dumps(moved))
    row = next(line for line in build_report(fusion_config, reports, "s").splitlines()
               if line.startswith("| rnd | fused | sample |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[9] == "— (other machine)" and cells[-1] == f"no: kept {100 * (0.97 - kept):.1f} points short"
    del moved["efficiency"]["machine"]                    # results written before: their provenance decides
    moved["provenance"]["machine"]["id"] = "another-machine"
    fused_path.write_text(json.dumps(moved))
    assert "| — (other machine) | no: kept" in next(line for line in build_report(fusion_config, reports, "s").splitlines()
                                                if line.startswith("| rnd | fused | sample |"))
    fused_path.write_text(saved)

    # a fusion's key follows its members: change one member and the fusion reruns
    from rankers.sanity import Random

    calls = []
    real = Random.rank
    monkeypatch.setattr(Random, "rank", lambda self, *a, **kw: calls.append(1) or real(self, *a, **kw))
    again = {o.ranker: o.status for o in Runner(fusion_config, reports, cache=cache, progress=False).run_suite("s")}
    assert again["fused"] == "up-to-date" and not calls
    changed = make_config(
        {"sample": fusion_config.datasets["sample"].source},
        {**{n: _raw(s) for n, s in fusion_config.rankers.items()},
         "rnd": {"kind": "random", "seed": 7, "first_stage": "bm25s", "depth": 20}},
        {"s": {"rankers": ["bm25s", "orc", "rnd", "fused"], "datasets": ["sample"]}})
    st = {o.ranker: o.status for o in Runner(changed, reports, cache=cache, progress=False).run_suite("s")}
    assert st["fused"] == "ran" and st["orc"] == "up-to-date"


def _raw(spec):
    from harness.params import as_dict

    raw = {"kind": spec.kind, **as_dict(spec.params)}
    if spec.first_stage:
        raw.update(first_stage=spec.first_stage, depth=spec.depth)
    return raw


def test_fusion_config_errors(scifact_sample):
    base = {"bm25s": {"kind": "bm25", "backend": "bm25s"}}

    def parse(rankers):
        return make_config({"sample": f"local:{scifact_sample}"}, {**base, **rankers},
                           {"s": {"rankers": ["bm25s"], "datasets": ["sample"]}})

    with pytest.raises(ConfigError, match=r"\[rankers.f\] members: unknown ranker \"bm52s\" \(did you mean \"bm25s\""):
        parse({"f": {"kind": "fusion", "members": {"bm52s": 1.0}}})
    with pytest.raises(ConfigError, match="members must name at least one ranker"):
        parse({"f": {"kind": "fusion"}})
    with pytest.raises(ConfigError, match=r"members.bm25s weight must be > 0"):
        parse({"f": {"kind": "fusion", "members": {"bm25s": 0.0}}})
    with pytest.raises(ConfigError, match="form a cycle .*: f -> g -> f"):
        parse({"f": {"kind": "fusion", "members": {"g": 1.0}}, "g": {"kind": "fusion", "members": {"f": 1.0}}})
    with pytest.raises(ConfigError, match="normalize"):
        parse({"f": {"kind": "fusion", "members": {"bm25s": 1.0}, "normalize": "softmax"}})


def test_fusion_runs_on_a_reranking_set_when_its_members_do(tmp_path):
    """TREC DL's local copy holds only judged and run passages: a fusion of rerankers of the shipped
    BM25 run applies there (its members do); one whose member searches the corpus does not."""
    from conftest import DATASETS

    cfg = make_config(
        {"dl19": f"local:{DATASETS / 'trec-dl-2019'}"},
        {"run": {"kind": "run", "run": "bm25"},
         "orc": {"kind": "oracle", "first_stage": "run", "depth": 20},
         "rnd": {"kind": "random", "first_stage": "run", "depth": 20},
         "bm25s": {"kind": "bm25", "backend": "bm25s"},
         "fused": {"kind": "fusion", "members": {"orc": 1.0, "rnd": 1.0}},
         "fused-search": {"kind": "fusion", "members": {"orc": 1.0, "bm25s": 1.0}}},
        {"s": {"rankers": ["run", "orc", "rnd", "fused", "fused-search"], "datasets": ["dl19"]}},
        settings={"latency_queries": 0})
    out = {o.ranker: o for o in Runner(cfg, tmp_path / "r", cache=Cache(tmp_path / "c"), progress=False).run_suite("s")}
    assert out["fused"].status == "ran", out["fused"].message
    assert out["fused-search"].status == "n/a" and "member bm25s" in out["fused-search"].message
