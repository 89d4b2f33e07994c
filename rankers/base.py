"""The one plugin type: a Ranker ranks all queries of a dataset at once.

``rank(queries, candidates, k)``: with ``candidates=None`` a retriever searches the whole corpus;
given candidates (a first stage's run cut to a depth) a reranker orders only those. Pair scorers
(cross-encoders, distilled students, ONNX models) implement ``score(pairs)`` only and inherit
``rank`` from ``PairScorer``, the rerank adapter.

Module imports stay light: libraries are imported inside methods, so listing or validating a
config never loads torch.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Mapping, Sequence

from harness.errors import RankerUnavailable
from harness.params import as_dict

if TYPE_CHECKING:
    import numpy as np

    from harness.cache import Cache
    from harness.data import Dataset
    from harness.types import Run


@dataclass(frozen=True)
class NoParams:
    pass


@dataclass(frozen=True)
class Footprint:
    index_bytes: int = 0      # on disk: inverted index, encoded corpus, ...
    model_bytes: int = 0      # on disk: model weights and tokenizer
    params: int = 0           # model parameters
    dtype: str | None = None
    device: str = "cpu"
    build_seconds: float | None = None   # building the index / encoding the corpus, when it was built


@dataclass(frozen=True)
class Context:
    """What the harness hands every ranker."""

    cache: "Cache"
    root: Path = Path(".")      # bench.toml's folder: relative paths in the config resolve here
    seed: int = 42
    progress: bool = True
    threads: int = 0          # 0: the library's default (all cores)
    models: Any = None        # resolves "recipe:NAME" model references (training.recipes.TrainedModels)
    chains: Any = None        # the runner: other rankers' runs and instances, for kinds built on them (fusion)


def require(module: str, extra: str, what: str):
    """Import a library a ranker needs, or say which extra installs it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise RankerUnavailable(f"{what} needs the Python package {module!r} ({e}); "
                                f"install it with: pip install 'rankbench[{extra}]'") from None


class Ranker:
    kind: ClassVar[str] = ""
    VERSION: ClassVar[int] = 1                   # bump when a change alters this kind's output
    Params: ClassVar[type] = NoParams
    OPERATIONAL: ClassVar[frozenset[str]] = frozenset()   # params that never change the output
    retrieves: ClassVar[bool] = True             # can rank a whole corpus (candidates=None)
    reranks: ClassVar[bool] = False              # can order given candidates
    precomputed: ClassVar[bool] = False          # output read from a file: latency is meaningless
    runs_references: ClassVar[bool] = True       # False: referenced rankers lend a model, their chains never run
    references_key: ClassVar[str] = "members"    # the parameter that names them (in error messages)
    batch_invariant: bool = True                 # a pair's score does not depend on what else is in its batch

    def __init__(self, name: str, params: Any, ctx: Context):
        self.name = name
        self.params = params
        self.ctx = ctx
        self.dataset: "Dataset | None" = None

    # -- what the harness asks -------------------------------------------------------------

    def applies_to(self, dataset: "Dataset", reranking: bool) -> str | None:
        """None if this ranker can run on the dataset, else the reason it cannot."""
        if reranking and not self.reranks:
            return f"{self.kind} cannot rerank a first stage"
        if not reranking and not self.retrieves:
            return f"{self.kind} only reranks: give it a first_stage"
        if not reranking and dataset.rerank_only:
            return (f"{dataset.name} is a reranking set (its corpus is only the judged and run "
                    f"passages): rank it through a first stage")
        return None

    def fingerprint_inputs(self, dataset: "Dataset") -> dict:
        """Everything that determines this ranker's output on a dataset, except the dataset's
        own fingerprint (queries, qrels, corpus), which the harness adds."""
        params = {k: v for k, v in as_dict(self.params).items() if k not in self.OPERATIONAL}
        return {"kind": self.kind, "version": self.VERSION, "params": params, **self.model_identity()}

    @classmethod
    def references(cls, params: Any, where: str) -> tuple[str, ...]:
        """Names of other bench.toml rankers this one is built on (checked to exist, no cycles)."""
        return ()

    @classmethod
    def check_references(cls, params: Any, rankers: Mapping[str, Any], where: str) -> None:
        """Once every ranker is parsed: refuse referenced rankers this kind cannot build on."""

    def model_identity(self) -> dict:
        """Hashes of model files, for rankers that load one."""
        return {}

    @property
    def recipe(self) -> str | None:
        """The bench.toml recipe that trains this ranker's model (``model = "recipe:NAME"``), if any."""
        from harness.params import recipe_of

        return recipe_of(self.params)

    def trained_models(self):
        """The harness's trained models (``training.recipes.TrainedModels``)."""
        if self.ctx.models is None:
            raise RankerUnavailable(f"ranker {self.name}: model {getattr(self.params, 'model', '?')!r} is trained "
                                    f"by the harness; run it through `rankbench run` or `rankbench train`")
        return self.ctx.models

    # -- the protocol ------------------------------------------------------------------------

    def prepare(self, dataset: "Dataset", reranking: bool = False) -> None:
        """Build or load what ranking needs (index, model). Idempotent; cached by content.

        ``reranking`` says whether ``rank`` will get candidates, so a retriever builds its corpus
        index only when it will search the corpus. Time spent here is reported as build time,
        not as ranking time.
        """
        self.dataset = dataset

    def rank(self, queries: Mapping[str, str], candidates: "Run | None", k: int) -> "Run":
        raise NotImplementedError

    def footprint(self) -> Footprint:
        return Footprint()

    def run_stats(self) -> dict:
        """Figures about the last ``rank`` call that the report shows (e.g. truncated pairs)."""
        return {}

    def close(self) -> None:
        """Release memory held for the current dataset."""


class PairScorer(Ranker):
    """The rerank adapter: a ranker that only scores (query text, document text) pairs.

    ``rank`` gathers every candidate pair of every query, scores them in one ``score`` call (so
    the scorer batches across queries) and orders each query's candidates by score.
    """

    retrieves = False
    reranks = True

    def score(self, pairs: Sequence[tuple[str, str]]) -> "np.ndarray":
        raise NotImplementedError

    def rank(self, queries: Mapping[str, str], candidates: "Run | None", k: int) -> "Run":
        from harness.types import ranked

        if candidates is None:
            raise ValueError(f"{self.kind} only reranks: candidates are required")
        order: list[tuple[str, str]] = []
        for qid in queries:
            for did in candidates.get(qid, {}):
                order.append((qid, did))
        if not order:
            return {qid: {} for qid in queries}
        docs = self.dataset.docs({d for _, d in order})
        scores = self.score([(queries[q], docs[d].joined()) for q, d in order])
        if len(scores) != len(order):
            raise RuntimeError(f"{self.kind}.score returned {len(scores)} scores for {len(order)} pairs")
        run: dict[str, dict[str, float]] = {qid: {} for qid in queries}
        for (qid, did), s in zip(order, scores):
            run[qid][did] = float(s)
        return {qid: dict(ranked(docs_)[:k]) for qid, docs_ in run.items()}

