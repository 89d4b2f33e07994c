"""Training recipes: models rankbench trains itself, from bench.toml's ``[recipes.NAME]``.

A ranker uses one with ``model = "recipe:NAME"``. The trained model is a sentence-transformers
folder in the content-addressed cache under a key made of everything that determines it: the
recipe, the starting model's files, the training and dev data, the miners' runs, the queries the
leakage guard removed, and the code version. ``rankbench train RANKER`` builds it; a run that
needs it builds it first; later runs reuse it.

What the harness does here, and the ranker code does not: choose the training queries and their
labels, mine hard negatives with other rankers of the config, and refuse every query that an
evaluation split of a suite using the model contains (by id where the corpora are the same, by
exact text everywhere). The model's ``data.json`` names every dataset it saw and what was
removed.
"""
from __future__ import annotations

import json
import random
import time
from pathlib import Path
from typing import Any

from harness.cache import fingerprint
from harness.errors import ConfigError, DataError
from harness.params import as_dict, recipe_of
from harness.recipe_spec import RecipeSpec

from .data import Example, TrainingData, _norm_text
from .guard import LeakageGuard


VERSION = 3     # bump when data selection or training changes what a recipe produces


class TrainedModels:
    """``ctx.models`` for rankers: the identity and the folder of a recipe's model."""

    def __init__(self, runner: Any):
        # the harness.runner.Runner that owns it (its config, cache, datasets and other rankers'
        # runs); passed in, never imported: the runner stands on training, not the other way
        self.runner = runner
        self._identity: dict[str, str] = {}
        self.guard = LeakageGuard(runner, self)
        self._exported: set[str] = set()

    @property
    def config(self):
        return self.runner.config

    def spec(self, name: str) -> RecipeSpec:
        from harness.errors import unknown

        if name not in self.config.recipes:
            raise ConfigError(unknown("recipe", name, self.config.recipes, str(self.config.path)))
        return self.config.recipes[name]

    # -- the leakage guard ---------------------------------------------------------------------

    def recipes_in(self, ranker: str) -> list[str]:
        """Recipes a ranker's output depends on: in its chain, its fusion members, and the teachers
        of those, transitively. A teacher's guard covers its students' evaluation sets too."""
        out: list[str] = []

        def add(recipe: str) -> None:
            if recipe in out:
                return
            out.append(recipe)
            teacher = self.spec(recipe).teacher
            if teacher is not None:
                for s in self.config.closure(teacher):
                    used = recipe_of(s.params)
                    if used is not None:
                        add(used)

        for s in self.config.closure(ranker):
            used = recipe_of(s.params)
            if used is not None:
                add(used)
        return out

    def _guard(self, name: str) -> tuple[dict[str, set[str]], set[str], list[str]]:
        """What the recipe's training must not see (training.guard)."""
        return self.guard.held_out(self.guard.users_of_recipe(name))

    # -- identity ------------------------------------------------------------------------------

    def identity(self, name: str) -> str:
        if name not in self._identity:
            spec = self.spec(name)
            if spec.teacher is not None and name in self.recipes_in(spec.teacher):
                raise ConfigError(f"[recipes.{name}]: its teacher {spec.teacher} is built on this recipe's own model")
            from rankers._models import resolve_model

            guard_ids, guard_texts, _ = self._guard(name)
            for ds in spec.train + ((spec.dev,) if spec.dev else ()):
                self._check_not_evaluated(spec, ds)
            data = {}
            for ds_name in spec.train + ((spec.dev,) if spec.dev else ()):
                ds = self.runner.dataset(ds_name)
                data[ds_name] = {"dataset": ds.fingerprint(),
                                 "miners": {m: self.runner.chain_fingerprint(m, ds)
                                            for m in self._miners(spec, ds)}}
                if spec.teacher is not None and ds_name in spec.train:
                    data[ds_name]["teacher"] = self.runner.chain_fingerprint(spec.teacher, ds)
            self._identity[name] = fingerprint({
                "recipe": _recipe_identity(spec),
                "init": resolve_model(spec.init).identity(),
                "data": data,
                "guard": fingerprint({"ids": {k: sorted(v) for k, v in guard_ids.items()},
                                      "texts": sorted(guard_texts)}),
                "code": _code_version(),
            })
        return self._identity[name]

    def _check_not_evaluated(self, spec: RecipeSpec, ds_name: str) -> None:
        twin = self.guard.evaluated_twin(ds_name, self.guard.users_of_recipe(spec.name))
        if twin is not None:
            raise ConfigError(f"[recipes.{spec.name}]: dataset {ds_name} is evaluated by a suite that uses this "
                              f"model ({twin[1]}); train on another split")

    def _miners(self, spec: RecipeSpec, ds) -> list[str]:
        found = [m for m in spec.miners if self.runner.applicability(m, ds) is None]
        if not found:
            raise ConfigError(f"[recipes.{spec.name}]: none of the miners {list(spec.miners)} can rank {ds.name} "
                              f"(add one that can, e.g. a published run for a reranking set)")
        return found

    # -- the model -----------------------------------------------------------------------------

    def path(self, name: str) -> Path:
        """The trained model's folder, training it first when the cache does not have it."""
        return self.build(name)[0]

    def build(self, name: str, force: bool = False) -> tuple[Path, dict]:
        """The recipe's model (folder, cache entry), trained first when the cache lacks it: by one
        process only, when several workers (or nodes sharing the cache) ask at once."""
        key = self.identity(name)
        cache = self.runner.cache
        hit = None if force else cache.get("models", key)
        if hit is None:
            with cache.get_or_lock("models", key, f"recipe {name}") as hit:
                if force or hit is None:
                    self._train(name, key, force)
        folder = cache.path("models", key)
        return folder / "model", json.loads((folder / "entry.json").read_text())

    def _train(self, name: str, key: str, force: bool) -> None:
        from rankers.base import refuse_while_ranking

        refuse_while_ranking(f"training recipe {name}")
        cache = self.runner.cache
        spec = self.spec(name)
        workdir = cache.home / "training" / key[:2] / key
        workdir.mkdir(parents=True, exist_ok=True)
        self.runner.log(f"training {spec.produces} from recipe {name} (checkpoints in {workdir})")
        describe = {"what": "trained model", "recipe": name, "produces": spec.produces}
        t0 = time.perf_counter()
        data = self.training_data(name)
        prep_s = time.perf_counter() - t0

        from training.trainer import plot_history, train_model

        with cache.build("models", key, describe, replace=force) as folder:
            history = train_model(spec, data, folder / "model", workdir, log=self.runner.log,
                                          progress=self.runner.ctx.progress)
            (folder / "data.json").write_text(json.dumps(data.report, indent=1, sort_keys=True) + "\n")
            (folder / "history.json").write_text(json.dumps(history, indent=1, sort_keys=True) + "\n")
            (folder / "timing.json").write_text(json.dumps({"data_seconds": round(prep_s, 1)}) + "\n")
            plot_history(history, folder / "curves.png", title=f"recipe {name}")

    # -- what the report says about a model -------------------------------------------------------

    def records(self, ranker: str) -> list[dict]:
        """For each trained model in the ranker's chain: what it saw, how long it took, how to rebuild
        it. Its history, data and curves are copied to reports/models/RECIPE/ (committed)."""
        out = []
        for name in self.recipes_in(ranker):
            users = [s for s in self.config.closure(ranker) if recipe_of(s.params) == name]
            spec = users[0] if users else self.config.ranker(ranker)
            path, entry = self.build(name)
            folder = path.parent
            history = json.loads((folder / "history.json").read_text())
            data = json.loads((folder / "data.json").read_text())
            if name not in self._exported:
                self._export(name, folder)
            recipe = self.spec(name)
            out.append({
                "recipe": name, "ranker": spec.name, "key": entry.get("key", "")[:16],
                "description": recipe.description, "init": recipe.init, "produces": recipe.produces,
                "layers": list(recipe.layers), "loss": recipe.loss, "teacher": recipe.teacher,
                "train": {d: {k: v[k] for k in ("source", "split", "queries_used", "examples",
                                                "refused_by_leakage_guard", "miners")}
                          for d, v in data["train"].items()},
                "dev": {k: v for k, v in (data.get("dev") or {}).items() if k != "query_ids"} or None,
                "evaluated_on": data["evaluated_on"],
                "steps": history["steps"], "examples": history["examples"],
                "train_seconds": history["train_seconds"], "device": history["device"],
                "build_seconds": entry.get("build_seconds"),
                "start_dev": history.get("start_dev", {}).get("dev_ndcg@10"), "best_dev": history.get("best_metric"),
                "command": f"rankbench train {name}",
                "files": f"reports/models/{name}/",
            })
        return out

    def _export(self, name: str, folder: Path) -> None:
        """Copy the model's history, data and curves to reports/models/NAME/, once per run."""
        import shutil

        from harness.files import atomic_write_text

        keep = self.runner.reports / "models" / name
        keep.mkdir(parents=True, exist_ok=True)
        for f in ("history.json", "data.json", "curves.png"):
            if (folder / f).exists():
                shutil.copyfile(folder / f, keep / f)
        atomic_write_text(keep / "recipe.json", json.dumps(as_dict(self.spec(name)), indent=1) + "\n")
        self._exported.add(name)

    # -- training data -------------------------------------------------------------------------

    def training_data(self, name: str) -> TrainingData:
        spec = self.spec(name)
        guard_ids, guard_texts, guard_names = self._guard(name)
        rng = random.Random(spec.seed)
        settings = self.config.settings
        examples: list[Example] = []
        report: dict = {"recipe": name, "evaluated_on": guard_names, "train": {}, "dev": None}
        for ds_name in spec.train:
            ds = self.runner.dataset(ds_name)
            queries, qrels = ds.queries(), ds.qrels()
            fp = ds.corpus_fingerprint()
            pools = self._pools(spec, ds, settings)
            per_query = spec.examples_per_query.get(ds_name, 1)
            level = ds.conventions.rel_level
            kept, refused, no_positive, no_pool, n_ex = [], [], 0, 0, 0
            candidates = sorted(qrels)
            if spec.max_queries and len(candidates) > spec.max_queries:
                candidates = sorted(random.Random(f"{spec.seed}:{ds_name}:sample").sample(candidates, spec.max_queries))
            for qid in candidates:
                if qid not in queries:
                    continue
                if qid in guard_ids.get(fp, ()) or _norm_text(queries[qid]) in guard_texts:
                    refused.append(qid)
                    continue
                rel = qrels[qid]
                top = max(rel.values())
                positives = sorted(d for d, g in rel.items() if g == top and g >= level and d != qid)
                if not positives:
                    no_positive += 1
                    continue
                judged_relevant = [d for d, g in rel.items() if g > 0]
                docs = ds.docs(set(pools.get(qid, [])) | set(judged_relevant))
                # a corpus may hold the same text under two ids (NFCorpus does): a negative must not be a
                # copy of a relevant document
                relevant_texts = {docs[d].joined() for d in judged_relevant}
                pool = [d for d in pools.get(qid, []) if rel.get(d, 0) <= 0 and d != qid
                        and docs[d].joined() not in relevant_texts]
                if len(pool) < spec.negatives:
                    no_pool += 1
                    continue
                kept.append(qid)
                q_rng = random.Random(f"{spec.seed}:{ds_name}:{qid}")
                chosen = positives if len(positives) <= per_query else q_rng.sample(positives, per_query)
                for p in chosen:
                    negatives = q_rng.sample(pool, spec.negatives)
                    examples.append(Example(qid, queries[qid], docs[p].joined(),
                                            [docs[n].joined() for n in negatives], ds_name, [p] + negatives))
                    n_ex += 1
            if spec.teacher is not None:
                self._teacher_scores(spec, ds, [e for e in examples if e.dataset == ds_name])
            report["train"][ds_name] = {
                "source": ds.source, "split": ds.split, "queries_used": len(kept), "examples": n_ex,
                "refused_by_leakage_guard": len(refused), "refused_ids": refused[:50],
                "without_positive": no_positive, "without_enough_negatives": no_pool,
                "miners": self._miners(spec, ds), "positive_rule": f"judged at the query's top grade, >= {level}",
            }
        if spec.teacher is not None:
            report["teacher"] = {"ranker": spec.teacher, "weights": spec.distill_weights,
                                 "temperature": spec.temperature}
        if not examples:
            raise DataError(f"[recipes.{name}]: no training example survives (see the counts: "
                            f"{json.dumps(report['train'])})")
        rng.shuffle(examples)
        dev = []
        if spec.dev:
            dev, report["dev"] = self._dev(spec, guard_ids, guard_texts, settings)
        report["examples"] = len(examples)
        return TrainingData(examples=examples, dev=dev, report=report)

    def _teacher_scores(self, spec: RecipeSpec, ds, examples: list[Example]) -> None:
        """The teacher's score for every document of every example, computed once per (teacher,
        dataset, candidate set) and kept in the cache."""
        import gzip

        candidates: dict[str, dict[str, float]] = {}
        for e in examples:
            candidates.setdefault(e.qid, {}).update({d: 0.0 for d in e.doc_ids})
        if not candidates:
            return
        key = fingerprint({"teacher": self.runner.chain_fingerprint(spec.teacher, ds), "dataset": ds.fingerprint(),
                           "candidates": {q: sorted(v) for q, v in sorted(candidates.items())},
                           "code": _code_version()})
        cache = self.runner.cache
        hit = cache.get("teacher-scores", key)
        if hit is None:
            with cache.get_or_lock("teacher-scores", key, f"teacher {spec.teacher} on {ds.name}") as hit:
                if hit is None:
                    self._score_with_teacher(spec, ds, candidates, key)
            hit = cache.path("teacher-scores", key)
        with gzip.open(hit / "scores.json.gz", "rt") as f:
            scores = json.load(f)
        if spec.teacher_norm == "zscore":
            # scale-free targets: a bi-encoder's cosines differ by hundredths, a cross-encoder's logits by
            # units; the student learns the teacher's preferences in units of its spread per query
            from rankers.fusion import normalise

            scores = {q: normalise(v, "zscore") for q, v in scores.items()}
        for e in examples:
            e.scores = [float(scores[e.qid][d]) for d in e.doc_ids]

    def _score_with_teacher(self, spec: RecipeSpec, ds, candidates: dict, key: str) -> None:
        import gzip

        cache = self.runner.cache
        queries = ds.queries()
        pairs = sum(len(v) for v in candidates.values())
        self.runner.log(f"teacher {spec.teacher} scoring {pairs} pairs of {len(candidates)} {ds.name} queries")
        run, cost = self.runner.member_rerank(spec.teacher, ds, {q: queries[q] for q in candidates},
                                                 candidates)
        missing = [(q, d) for q, v in candidates.items() for d in v if d not in run.get(q, {})]
        if missing:
            raise DataError(f"[recipes.{spec.name}]: teacher {spec.teacher} left {len(missing)} of the "
                            f"{pairs} candidates unscored (e.g. {missing[0]}); a teacher must score all it is given")
        describe = {"what": "teacher scores", "teacher": spec.teacher, "dataset": ds.name, "pairs": pairs,
                    "seconds": round(cost["rank_s"], 1)}
        with cache.build("teacher-scores", key, describe) as folder:
            with gzip.open(folder / "scores.json.gz", "wt") as f:
                json.dump(run, f)

    def _pools(self, spec: RecipeSpec, ds, settings) -> dict[str, list[str]]:
        from harness.types import ranked

        pools: dict[str, list[str]] = {}
        for miner in self._miners(spec, ds):
            run, _, _ = self.runner.get_run(miner, ds, max(spec.mine_depth, 100), _no_latency(settings))
            for qid, docs in run.items():
                seen = pools.setdefault(qid, [])
                for d, _ in ranked(docs)[:spec.mine_depth]:
                    if d not in seen:
                        seen.append(d)
        return pools

    def _dev(self, spec: RecipeSpec, guard_ids, guard_texts, settings):
        from harness.types import ranked

        ds = self.runner.dataset(spec.dev)
        queries, qrels = ds.queries(), ds.qrels()
        miner = self._miners(spec, ds)[0]
        run, _, _ = self.runner.get_run(miner, ds, max(spec.dev_depth, 100), _no_latency(settings))
        fp = ds.corpus_fingerprint()
        qids = [q for q in sorted(qrels) if q in queries and q in run
                and q not in guard_ids.get(fp, ()) and _norm_text(queries[q]) not in guard_texts]
        random.Random(f"{spec.seed}:dev").shuffle(qids)
        samples, chosen = [], []
        for qid in qids:
            level = ds.conventions.rel_level
            cands = [d for d, _ in ranked(run[qid])[:spec.dev_depth] if d != qid]
            positives = [d for d, g in qrels[qid].items() if g >= level]
            if len(cands) < 2 or not positives or not set(positives) & set(cands):
                continue      # nothing to rank, or no relevant candidate: the query cannot tell models apart
            docs = ds.docs(set(cands) | set(positives))
            samples.append({"query": queries[qid], "positive": [docs[d].joined() for d in positives],
                            "documents": [docs[d].joined() for d in cands]})
            chosen.append(qid)
            if len(samples) >= spec.dev_queries:
                break
        return samples, {"dataset": spec.dev, "source": ds.source, "split": ds.split, "queries": len(samples),
                         "candidates": f"{miner} top {spec.dev_depth}", "query_ids": chosen}


def _recipe_identity(spec: RecipeSpec) -> dict:
    """The recipe's fields that decide the model. Distillation's fields count only when it distils,
    so recipes written before they existed keep their cache keys."""
    skip = {"name", "description"}
    if spec.teacher is None:
        skip |= {"teacher", "distill_weights", "temperature", "teacher_norm"}
    return {k: v for k, v in as_dict(spec).items() if k not in skip}


def _no_latency(settings):
    import dataclasses

    return dataclasses.replace(settings, latency_queries=0)


def _code_version() -> list[int]:
    from harness import CODE_VERSION

    return [CODE_VERSION, VERSION]
