"""The one plugin type: a Ranker ranks all queries of a dataset at once.

``rank(queries, candidates, k)``: with ``candidates=None`` a retriever searches the whole corpus;
given candidates (a first stage's run cut to a depth) a reranker orders only those. Pair scorers
(cross-encoders, distilled students, ONNX models) implement ``score(pairs)`` only and inherit
``rank`` from ``PairScorer``, the rerank adapter.

Module imports stay light: libraries are imported inside methods, so listing or validating a
config never loads torch.
"""
from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Iterator, Mapping, Protocol, Sequence

from harness.errors import RankbenchError, RankerUnavailable
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
class Planned:
    """A cache entry a ranker builds before it ranks (``rankbench plan``): its step (train,
    export, index, encode), where it lives in the cache, and what it is, in words."""
    step: str
    area: str
    key: str
    what: str


class Rankers(Protocol):
    """What a ranker built on other rankers of the config (a fusion's members, an ONNX model's
    source) may ask the harness: the config's other rankers, by name. The harness implements it
    (``harness.pipeline.RankerSet``); rankers never see the Runner."""

    config: Any               # harness.config.Config

    def instance(self, name: str) -> "Ranker": ...

    def chain_fingerprint(self, name: str, dataset: "Dataset") -> str: ...

    def member_run(self, name: str, dataset: "Dataset", queries: Mapping[str, str], k: int) -> tuple["Run", dict]:
        """That ranker's whole chain ranking these queries (live, or its cached run in a benchmark)
        and what it cost (``rank_s``, and its efficiency record when cached)."""

    def member_rerank(self, name: str, dataset: "Dataset", queries: Mapping[str, str],
                      candidates: "Run") -> tuple["Run", dict]:
        """That ranker's final stage scoring the given candidates (all of them)."""

    def footprints(self, name: str) -> list["Footprint"]:
        """The footprint of each stage of that ranker's chain."""

    def dataset(self, name: str) -> "Dataset": ...

    def log(self, msg: str) -> None: ...


class Models(Protocol):
    """Resolves ``model = "recipe:NAME"`` references: models the harness trains
    (``training.recipes.TrainedModels``)."""

    guard: Any                # training.guard.LeakageGuard: what may be learnt or calibrated from

    def identity(self, recipe: str) -> str: ...

    def path(self, recipe: str) -> Path:
        """The trained model's folder (trained first when missing: the prepare phase's work)."""

    def training_data(self, recipe: str) -> Any:
        """The recipe's training examples (training.data.TrainingData)."""


@dataclass(frozen=True)
class Context:
    """What the harness hands every ranker."""

    cache: "Cache"
    root: Path = Path(".")      # bench.toml's folder: relative paths in the config resolve here
    seed: int = 42
    progress: bool = True
    threads: int = 0          # 0: the library's default (all cores)
    models: Models | None = None     # "recipe:NAME" models (training.recipes.TrainedModels)
    rankers: Rankers | None = None   # the config's other rankers, for kinds built on them (fusion, onnx)


class PrepareError(RankbenchError):
    """Something that belongs to the prepare phase (training a model, exporting one) was asked for
    while ranking: a bug in the ranker that asked, or a pipeline that was not prepared."""


_RANKING: ContextVar[str | None] = ContextVar("rankbench_ranking", default=None)


@contextmanager
def ranking(who: str) -> Iterator[None]:
    """Marks ranking time: training or exporting a model inside it is a PrepareError."""
    token = _RANKING.set(who)
    try:
        yield
    finally:
        _RANKING.reset(token)


def refuse_while_ranking(what: str) -> None:
    """Called where a model is built (trained, exported): those belong to the prepare phase."""
    who = _RANKING.get()
    if who is not None:
        raise PrepareError(f"{what} was asked for while {who} was ranking: models are trained and "
                           f"exported in the prepare phase (Pipeline.prepare), never inside rank or score")


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
    new_queries: ClassVar[bool] = True           # False: it only knows the dataset's own queries (a run file, the qrels)
    reranks_texts: ClassVar[bool] = False        # True: it orders any given texts (no corpus index or judgments needed): /rerank
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
        out = {"kind": self.kind, "version": self.VERSION, "params": params, **self.model_identity()}
        if not type(self).__module__.startswith("rankers."):
            out["code"] = _code_identity(type(self))    # a user's own kind: a code change is a new run
        return out

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

    @classmethod
    def implementation(cls, params) -> type:
        """The class that runs a ranker of this kind with these parameters: this one, or another
        that keeps its kind (a sentence-transformers kind with ``backend = "onnx"`` runs its model
        through onnxruntime)."""
        return cls

    def planned_models(self) -> list[Planned]:
        """The cache entries ``resolve_models`` builds (a model trained here; an ONNX export),
        known without building them."""
        if self.recipe is None:
            return []
        return [Planned("train", "models", self.trained_models().identity(self.recipe), f"recipe {self.recipe}")]

    def planned(self, dataset: "Dataset", reranking: bool) -> list[Planned]:
        """The cache entries ``prepare(dataset, reranking)`` builds (an index, an encoded corpus)."""
        return []

    def resolve_models(self) -> None:
        """The prepare phase's first step: find, train or export every model this ranker loads
        (Hub id, local folder, ``recipe:NAME``, ONNX export), before any ranking starts."""

    def find_model(self, ref: str):
        """The one way a ranker finds a model: a Hub id or a local folder (``rankers._models``), or
        ``recipe:NAME``, trained here (``ctx.models``, in the prepare phase only). Returns a
        ``rankers._models.ResolvedModel``."""
        from harness.params import RECIPE_PREFIX

        from ._models import ResolvedModel, resolve_model

        if ref.startswith(RECIPE_PREFIX):
            return ResolvedModel(ref, self.trained_models().path(ref[len(RECIPE_PREFIX):]), "trained by rankbench")
        return resolve_model(ref)

    @property
    def recipe(self) -> str | None:
        """The bench.toml recipe that trains this ranker's model (``model = "recipe:NAME"``), if any."""
        from harness.params import recipe_of

        return recipe_of(self.params)

    def trained_models(self) -> Models:
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

    def start_runtime(self) -> str | None:
        """Start what this ranker runs on (a JVM, torch), once per process, before ``prepare``,
        so its cost is reported on its own (``process.runtime_start_s``), never as loading or
        ranking time. Returns its name; None when there is nothing to start."""
        return None

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
    reranks_texts = True

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



def _code_identity(cls: type) -> str:
    """A hash of the source of a kind defined outside this package (and of its bases up to the
    package's own): its results are cached by what its code says, not by its name alone."""
    import hashlib
    import inspect

    h = hashlib.sha256()
    for c in cls.__mro__:
        if c.__module__.startswith("rankers.") or c is object:
            break
        try:
            h.update(inspect.getsource(c).encode())
        except (OSError, TypeError):        # defined in a REPL: its name and version only
            h.update(f"{c.__module__}:{c.__qualname__}".encode())
    return h.hexdigest()[:16]
