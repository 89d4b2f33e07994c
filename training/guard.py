"""The one leakage guard. Every place where a model could see what it is measured on asks it:
a recipe's training and dev splits, an INT8 model's calibration data, and `rankbench compare`.

The rule: data a model learns or calibrates from is never a dataset that a suite using the model
evaluates (the same content, by fingerprint), and no training query is an evaluated query (by id
where the corpus is the same, by case- and space-normalised text everywhere). A model's guard
covers every ranker whose chain, members or teachers use it.
"""
from __future__ import annotations

from typing import Any, Iterable

from .data import _norm_text


class LeakageGuard:
    def __init__(self, runner: Any, models: Any):
        self.runner = runner       # harness.runner.Runner: the config and its datasets
        self.models = models       # training.recipes.TrainedModels: which recipes a ranker depends on
        self._held: dict[frozenset, tuple[dict[str, set[str]], set[str], list[str]]] = {}

    def _same(self, a: str, b: str) -> bool:
        return self.runner.dataset(a).fingerprint() == self.runner.dataset(b).fingerprint()

    def users_of_recipe(self, recipe: str) -> set[str]:
        """The rankers whose output depends on a recipe's model (teachers' students included)."""
        return {r for r in self.runner.config.rankers if recipe in self.models.recipes_in(r)}

    def evaluated(self, users: Iterable[str]) -> list[tuple[str, str]]:
        """(suite, dataset) for each dataset a suite evaluates with any of these rankers."""
        return self.runner.config.evaluations(set(users))

    def evaluated_twin(self, dataset: str, users: Iterable[str]) -> tuple[str, str] | None:
        """The (suite, dataset) that evaluates these rankers on the same data as ``dataset``, if any:
        then ``dataset`` may not be learnt or calibrated from."""
        for suite, other in self.evaluated(users):
            if self._same(other, dataset):
                return suite, other
        return None

    def held_out(self, users: Iterable[str]) -> tuple[dict[str, set[str]], set[str], list[str]]:
        """What training must not see: query ids by corpus fingerprint, normalised query texts, and
        the evaluated datasets' names."""
        key = frozenset(users)
        if key not in self._held:
            ids: dict[str, set[str]] = {}
            texts: set[str] = set()
            names = list(dict.fromkeys(d for _, d in self.evaluated(key)))
            for name in names:
                ds = self.runner.dataset(name)
                queries = ds.queries()
                ids.setdefault(ds.corpus_fingerprint(), set()).update(queries)
                texts.update(_norm_text(t) for t in queries.values())
            self._held[key] = (ids, texts, names)
        return self._held[key]

    def learnt_twin(self, ranker: str, dataset: str) -> tuple[str, str] | None:
        """(recipe, dataset) when a model in the ranker's chain learnt from the same data as
        ``dataset`` (its training or dev split): then it may not be measured on ``dataset``."""
        for recipe in self.models.recipes_in(ranker):
            spec = self.models.spec(recipe)
            for used in spec.train + ((spec.dev,) if spec.dev else ()):
                if self._same(used, dataset):
                    return recipe, used
        return None
