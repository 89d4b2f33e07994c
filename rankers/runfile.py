"""A TREC run file as a ranker: published runs become leaderboard rows and first stages."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from harness.files import sha256_file
from harness.types import Run, read_trec_run, top_k

from .base import Ranker


@dataclass(frozen=True)
class RunParams:
    run: str | None = None     # a run shipped with the dataset: runs/<run>.trec(.gz)
    path: str | None = None    # or a file; "{dataset}" is replaced by the dataset's name


def run_file_path(path: str, dataset: str, root: Path) -> Path:
    """Where ``path = "..."`` points for a dataset: "{dataset}" replaced, relative to the config."""
    p = Path(path.replace("{dataset}", dataset)).expanduser()
    return p if p.is_absolute() else root / p


class RunFile(Ranker):
    kind = "run"
    Params = RunParams
    precomputed = True
    new_queries = False       # it holds the ranking of its own queries only

    def __init__(self, name, params, ctx):
        super().__init__(name, params, ctx)
        if (params.run is None) == (params.path is None):
            from harness.errors import ConfigError

            raise ConfigError(f"[rankers.{name}]: a run ranker needs exactly one of run = \"<name "
                              f"shipped with the dataset>\" or path = \"<file>\"")

    def _path(self, dataset) -> Path:
        return run_file_path(self.params.path, dataset.name, self.ctx.root)

    def applies_to(self, dataset, reranking):
        if reranking:
            return "a run file cannot rerank"
        if self.params.run is not None and self.params.run not in dataset.run_names():
            return f"{dataset.name} ships no run named {self.params.run!r}"
        if self.params.path is not None and not self._path(dataset).exists():
            return f"no run file {self._path(dataset)}"
        return None

    def fingerprint_inputs(self, dataset) -> dict:
        base = super().fingerprint_inputs(dataset)
        if self.params.run is not None:
            base["run_sha256"] = dataset.run_fingerprint(self.params.run)
        else:
            base["params"] = {"path": "<file>"}     # the content counts, not where it lies
            base["run_sha256"] = sha256_file(self._path(dataset))
        return base

    def prepare(self, dataset, reranking=False):
        super().prepare(dataset, reranking)
        if self.params.run is not None:
            self._run = dataset.load_run(self.params.run)
        else:
            from harness.data import check_run_file

            path = self._path(dataset)
            self._run = check_run_file(read_trec_run(path), path, dataset)

    def rank(self, queries: Mapping[str, str], candidates: Run | None, k: int) -> Run:
        return top_k({qid: self._run.get(qid, {}) for qid in queries}, k)
