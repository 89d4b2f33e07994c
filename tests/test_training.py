"""Training recipes: the leakage guard, the mined data, and a CI-sized training run on real data."""
from __future__ import annotations

import json
import tomllib

import pytest

from conftest import ROOT
from harness.config import parse_config
from harness.errors import ConfigError
from harness.runner import Runner

pytestmark = [pytest.mark.training, pytest.mark.models]


FIXTURE = ROOT / "tests" / "fixtures" / "training.toml"


def _config(extra: str = ""):
    """The training fixture config with a test's own tables added (never the real bench.toml)."""
    raw = tomllib.loads(FIXTURE.read_text() + extra)
    return parse_config(raw, FIXTURE)


GUARDED = """
[recipes.guarded]
train = ["nfcorpus-train", "scifact-train"]
dev = "nfcorpus-dev"
dev_queries = 40
miners = ["bm25s"]
mine_depth = 10

[rankers.guarded]
kind = "cross-encoder"
model = "recipe:guarded"
first_stage = "bm25s"

[suites.guarded]
rankers = ["guarded"]
datasets = ["nfcorpus", "scifact"]
"""


def test_leakage_guard_refuses_evaluation_queries_by_text(tmp_path):
    """NFCorpus train holds 4 queries whose text is a test query's, SciFact train 2: refused."""
    from training.data import _norm_text

    runner = Runner(_config(GUARDED), tmp_path, progress=False)
    data = runner.models.training_data("guarded")
    rep = data.report
    assert rep["evaluated_on"] == ["nfcorpus", "scifact"]
    assert rep["train"]["nfcorpus-train"]["refused_by_leakage_guard"] == 4
    assert rep["train"]["scifact-train"]["refused_by_leakage_guard"] == 2
    test_texts = {_norm_text(t) for ds in ("nfcorpus", "scifact") for t in runner.dataset(ds).queries().values()}
    assert not any(_norm_text(e.query) in test_texts for e in data.examples)
    # every example: a judged positive and mined negatives none of which is judged relevant
    train = {ds: runner.dataset(ds) for ds in ("nfcorpus-train", "scifact-train")}
    for e in data.examples[:200]:
        ds = train[e.dataset]
        rel = ds.qrels()[e.qid]
        docs = ds.docs(rel)
        assert e.positive in {docs[d].joined() for d, g in rel.items() if g > 0}
        assert not set(e.negatives) & {docs[d].joined() for d, g in rel.items() if g > 0}
        assert len(e.negatives) == 3
    # dev: held-out NFCorpus dev queries, each with at least two candidates and a relevant one among them
    assert len(data.dev) == 40 and rep["dev"]["dataset"] == "nfcorpus-dev"
    assert all(len(s["documents"]) >= 2 and set(s["positive"]) & set(s["documents"]) for s in data.dev)
    assert not set(rep["dev"]["query_ids"]) & set(runner.dataset("nfcorpus").queries())
    # a different evaluation set is a different model
    other = Runner(_config(GUARDED.replace('datasets = ["nfcorpus", "scifact"]', 'datasets = ["scifact"]')),
                   tmp_path, progress=False)
    assert other.models.identity("guarded") != runner.models.identity("guarded")


def test_a_recipe_extends_another_with_its_own_description_and_overrides():
    cfg = _config('\n[recipes.longer]\nextends = "ci-tiny"\nmax_steps = 48\nlayers = [0, 1]\n')
    base, child = cfg.recipes["ci-tiny"], cfg.recipes["longer"]
    assert (child.max_steps, tuple(child.layers)) == (48, (0, 1))
    assert child.train == base.train and child.lr == base.lr and child.negatives == base.negatives
    assert child.description == "" and base.description


def test_training_on_an_evaluated_split_is_an_error(tmp_path):
    cfg = _config(GUARDED.replace('train = ["nfcorpus-train", "scifact-train"]', 'train = ["scifact"]'))
    with pytest.raises(ConfigError, match="scifact is evaluated by a suite that uses this model"):
        Runner(cfg, tmp_path, progress=False).models.identity("guarded")


def test_recipe_config_errors_name_the_place():
    with pytest.raises(ConfigError, match=r"\[recipes.bad\]: unknown parameter \"lerning_rate\"; known: .*\blr\b"):
        _config('\n[recipes.bad]\ntrain = ["scifact-train"]\nlerning_rate = 1e-5\n')
    with pytest.raises(ConfigError, match=r"\[recipes.bad\]: unknown dataset \"scifact-tran\" \(did you mean \"scifact-train\"\?\)"):
        _config('\n[recipes.bad]\ntrain = ["scifact-tran"]\n')
    with pytest.raises(ConfigError, match=r"\[recipes.a\]: extends forms a cycle: a -> b -> a"):
        _config('\n[recipes.a]\nextends = "b"\n[recipes.b]\nextends = "a"\n')
    with pytest.raises(ConfigError, match=r"\[recipes.b\]: unknown recipe to extend \"ci-tiy\" \(did you mean \"ci-tiny\"\?\)"):
        _config('\n[recipes.b]\nextends = "ci-tiy"\n')
    with pytest.raises(ConfigError, match=r"\[rankers.x\] model: unknown recipe \"nope\""):
        _config('\n[rankers.x]\nkind = "cross-encoder"\nmodel = "recipe:nope"\nfirst_stage = "bm25s"\n')


def test_ci_sized_recipe_trains_and_beats_its_start_on_held_out_queries(tmp_path):
    """bench.toml's ci-tiny: 3 MiniLM layers, 48 SciFact train queries, 24 steps on CPU. The loss
    falls, and the trained model reranks BM25's top 10 for 100 held-out SciFact test queries
    better than the same model before training."""
    from harness.measures import evaluate
    from harness.types import top_k
    from rankers.crossencoder import load_cross_encoder, score_pairs
    from training.trainer import build_cross_encoder

    config = _config()
    runner = Runner(config, tmp_path, progress=False)
    path, entry = runner.models.build("ci-tiny")
    folder = path.parent
    history = json.loads((folder / "history.json").read_text())
    losses = [h["loss"] for h in history["log"] if "loss" in h]
    assert len(losses) >= 6
    assert sum(losses[-4:]) / 4 < sum(losses[:4]) / 4, losses
    data = json.loads((folder / "data.json").read_text())
    assert data["evaluated_on"] == ["scifact"] and data["train"]["scifact-train"]["queries_used"] == 48
    assert (folder / "curves.png").stat().st_size > 5000

    scifact = runner.dataset("scifact")
    run, _, _ = runner.get_run("bm25s", scifact, 100, config.settings)
    qids = sorted(scifact.qrels())[:100]
    cands = top_k({q: run[q] for q in qids}, 10)
    queries = scifact.queries()
    pairs = [(q, d) for q in qids for d in cands[q]]
    docs = scifact.docs({d for _, d in pairs})
    texts = [(queries[q], docs[d].joined()) for q, d in pairs]
    spec = config.recipes["ci-tiny"]

    def ndcg(model):
        scores = score_pairs(model, texts, spec.max_length, 32)
        out = {}
        for (q, d), s in zip(pairs, scores):
            out.setdefault(q, {})[d] = float(s)
        return evaluate(out, {q: scifact.qrels()[q] for q in qids}, ["nDCG@10"]).aggregate["nDCG@10"]

    start = ndcg(build_cross_encoder(spec).eval())
    trained = ndcg(load_cross_encoder(str(path), "cpu"))
    print(f"ci-tiny on 100 held-out SciFact test queries, BM25 top 10: nDCG@10 {start:.4f} -> {trained:.4f}")
    assert trained > start + 0.01, (start, trained)
    # the cache hands the same model to the next run
    again, _ = Runner(config, tmp_path, progress=False).models.build("ci-tiny")
    assert again == path


def test_lora_recipe_saves_a_complete_model(tmp_path):
    """LoRA adapters are merged (scores unchanged, checked in training) and the folder is a plain
    model with the recipe's layer subset, not an adapter that would load onto the 6-layer base."""
    from rankers.crossencoder import load_cross_encoder

    cfg = _config('\n[recipes.lora-tiny]\nlayers = [0, 1]\nmax_length = 64\ntrain = ["scifact-train"]\n'
                  'max_queries = 16\nminers = ["bm25s"]\nmax_steps = 3\nbatch_size = 4\nlora = true\n')
    path, _ = Runner(cfg, tmp_path, progress=False).models.build("lora-tiny")
    assert not [p for p in path.iterdir() if p.name.startswith("adapter")]
    model = load_cross_encoder(str(path), "cpu")
    assert len(model[0].auto_model.encoder.layer) == 2
    assert not any("lora" in n for n, _ in model.named_parameters())


def test_distill_objective_terms():
    import torch

    from training.losses import distill_objective

    teacher = torch.tensor([[3.0, 1.0, 0.0], [2.0, 2.5, -1.0]])
    same_margins = teacher + torch.tensor([[5.0], [-2.0]])     # a shift per query changes no margin
    loss, parts = distill_objective(same_margins, teacher, weights={"margin_mse": 1.0, "listwise": 1.0})
    assert parts["margin_mse"] == pytest.approx(0.0, abs=1e-9) and parts["listwise"] == pytest.approx(0.0, abs=1e-6)
    flipped = teacher[:, [0, 2, 1]]
    _, worse = distill_objective(flipped, teacher, weights={"margin_mse": 1.0, "listwise": 1.0})
    assert worse["margin_mse"] > 0.5 and worse["listwise"] > 0.05
    # contrastive: the positive (column 0) against the group and the in-batch extras
    good = torch.tensor([[4.0, 0.0, 0.0]])
    bad = torch.tensor([[0.0, 4.0, 0.0]])
    extra = torch.tensor([[1.0]])
    lg, _ = distill_objective(good, good, extra, {"contrastive": 1.0})
    lb, _ = distill_objective(bad, good, extra, {"contrastive": 1.0})
    assert lg < 0.1 < lb
    with pytest.raises(ValueError, match="teacher's 3 scores per example"):
        from training.losses import _labels

        _labels(torch.zeros(2, 4), 2, 3)


DISTILL_TINY = """
[recipes.distill-tiny]
layers = [0]
max_length = 96
train = ["scifact-train"]
max_queries = 48
miners = ["bm25s"]
mine_depth = 20
negatives = 3
loss = "distill"
teacher = "minilm"
batch_size = 8
max_steps = 24
lr = 1e-4
"""


def test_ci_sized_distillation_learns_the_teachers_scores(tmp_path):
    """A 1-layer cross-encoder student distilled from the all-MiniLM-L6-v2 bi-encoder on 48 SciFact
    train queries: the teacher's scores are cached and are the bi-encoder's own cosines (z-scored per
    query), the loss
    falls, and the student orders each example's documents much more like the teacher than its
    untrained start does (a test of the mechanics: labels aligned with their documents, the terms'
    signs; held-out quality is the distill suite's job)."""
    import numpy as np

    from rankers.crossencoder import load_cross_encoder, score_pairs
    from training.trainer import build_cross_encoder

    config = _config(DISTILL_TINY)
    runner = Runner(config, tmp_path, progress=False)
    data = runner.models.training_data("distill-tiny")
    assert data.report["teacher"]["ranker"] == "minilm" and all(len(e.scores) == 4 for e in data.examples)
    # the cached scores are the teacher's cosines for those very texts
    model = runner.instance("minilm").model
    e = data.examples[0]
    q = model.encode([e.query], normalize_embeddings=True)
    d = model.encode([e.positive] + e.negatives, normalize_embeddings=True)
    cos = (q @ d.T)[0]        # one example per query here: z-scored over its own 4 documents
    np.testing.assert_allclose(e.scores, (cos - cos.mean()) / cos.std(), atol=1e-3)
    again = Runner(config, tmp_path, progress=False).models.training_data("distill-tiny")
    assert [e.scores for e in again.examples] == [e.scores for e in data.examples]

    path, _ = runner.models.build("distill-tiny")
    history = json.loads((path.parent / "history.json").read_text())
    losses = [h["loss"] for h in history["log"] if "loss" in h]
    assert sum(losses[-4:]) / 4 < sum(losses[:4]) / 4, losses

    # fidelity: per example, how well the student orders its 4 documents as the teacher does
    from scipy.stats import kendalltau

    texts = [(e.query, d) for e in data.examples for d in [e.positive] + e.negatives]

    def agreement(student_model):
        student = score_pairs(student_model, texts, 96, 32).reshape(len(data.examples), 4)
        return float(np.mean([kendalltau(s, e.scores).statistic for s, e in zip(student, data.examples)]))

    start = agreement(build_cross_encoder(config.recipes["distill-tiny"]).eval())
    trained = agreement(load_cross_encoder(str(path), "cpu"))
    print(f"distill-tiny on its 48 training queries: Kendall tau with the teacher {start:.3f} -> {trained:.3f}")
    assert trained > start + 0.2, (start, trained)


def test_distill_config_errors():
    with pytest.raises(ConfigError, match=r"\[recipes.d\]: loss = \"distill\" and teacher"):
        _config('\n[recipes.d]\ntrain = ["scifact-train"]\nloss = "distill"\n')
    with pytest.raises(ConfigError, match=r"unknown teacher ranker \"minilmm\""):
        _config('\n[recipes.d]\ntrain = ["scifact-train"]\nloss = "distill"\nteacher = "minilmm"\n')
    loop = _config('\n[recipes.d]\ntrain = ["scifact-train"]\nloss = "distill"\nteacher = "d-rerank"\n'
                   '\n[rankers.d-rerank]\nkind = "cross-encoder"\nmodel = "recipe:d"\nfirst_stage = "bm25s"\n')
    with pytest.raises(ConfigError, match=r"its teacher d-rerank is built on this recipe's own model"):
        Runner(loop, ROOT / "reports", progress=False).models.identity("d")
    with pytest.raises(ConfigError, match=r"unknown distill_weights term \"kl\""):
        _config('\n[recipes.d]\ntrain = ["scifact-train"]\nloss = "distill"\nteacher = "minilm"\n'
                'distill_weights = { kl = 1.0 }\n')


def test_ci_sized_bi_encoder_student_learns_the_teachers_scores(tmp_path):
    """A 1-layer all-MiniLM-L6-v2 bi-encoder distilled from the full 6-layer one (48 SciFact train
    queries): it saves as a sentence-transformers folder the bi-encoder kind loads through
    ``recipe:NAME``, and it orders each example's documents more like the teacher than at its start."""
    import numpy as np
    from scipy.stats import kendalltau

    from training.trainer import build_bi_encoder

    extra = DISTILL_TINY.replace("[recipes.distill-tiny]", "[recipes.bi-tiny]\nproduces = \"bi-encoder\"")
    extra += ('\n[rankers.bi-tiny]\nkind = "bi-encoder"\nmodel = "recipe:bi-tiny"\nfirst_stage = "bm25s"\n'
              'depth = 10\n')
    config = _config(extra)
    runner = Runner(config, tmp_path, progress=False)
    data = runner.models.training_data("bi-tiny")
    path, _ = runner.models.build("bi-tiny")
    student = runner.instance("bi-tiny")
    assert student.resolved.path == path and len(student.model[0].auto_model.encoder.layer) == 1

    def agreement(model):
        taus = []
        for e in data.examples:
            q = model.encode([e.query], normalize_embeddings=True)
            d = model.encode([e.positive] + e.negatives, normalize_embeddings=True)
            taus.append(kendalltau((q @ d.T)[0], e.scores).statistic)
        return float(np.mean(taus))

    start = agreement(build_bi_encoder(config.recipes["bi-tiny"]).eval())
    trained = agreement(student.model)
    print(f"bi-tiny on its 48 training queries: Kendall tau with the teacher {start:.3f} -> {trained:.3f}")
    assert trained > start + 0.1, (start, trained)
    with pytest.raises(ConfigError, match="kind 'cross-encoder' cannot load recipe 'bi-tiny'"):
        _config(extra + '\n[rankers.wrong]\nkind = "cross-encoder"\nmodel = "recipe:bi-tiny"\nfirst_stage = "bm25s"\n')


def test_interrupted_training_resumes_from_its_last_checkpoint(tmp_path):
    """Training that stopped after its first checkpoint picks up there (optimizer, scheduler and data
    order restored) and ends with the model an uninterrupted run gives."""
    import shutil

    from rankers.crossencoder import load_cross_encoder, score_pairs

    cfg = _config('\n[recipes.resume-tiny]\nlayers = [0]\nmax_length = 64\ntrain = ["scifact-train"]\n'
                  'max_queries = 16\nminers = ["bm25s"]\nmax_steps = 4\neval_steps = 2\nbatch_size = 4\n')
    runner = Runner(cfg, tmp_path, progress=False)
    path, _ = runner.models.build("resume-tiny")
    data = runner.models.training_data("resume-tiny")
    probe = [(e.query, d) for e in data.examples[:4] for d in [e.positive] + e.negatives]
    whole = score_pairs(load_cross_encoder(str(path), "cpu"), probe, 64, 16)

    key = runner.models.identity("resume-tiny")
    workdir = runner.cache.home / "training" / key[:2] / key
    assert sorted(p.name for p in workdir.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]
    shutil.rmtree(workdir / "checkpoint-4")            # as if stopped between the two checkpoints
    load_cross_encoder.cache_clear()
    path2, _ = runner.models.build("resume-tiny", force=True)
    history = json.loads((path2.parent / "history.json").read_text())
    assert history["resumed_from"].endswith("checkpoint-2")
    resumed = score_pairs(load_cross_encoder(str(path2), "cpu"), probe, 64, 16)
    assert abs(resumed - whole).max() < 1e-4, abs(resumed - whole).max()
