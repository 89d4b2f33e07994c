"""What a suite needs, as a graph, before anything runs: ``rankbench plan SUITE``.

Nodes, in the order they can be done (each after the nodes it needs):

- ``train:RECIPE``: a model trained here (a teacher's model before its student's);
- ``export:RANKER``: an ONNX export (and quantization) of a source ranker's model;
- ``index:RANKER@DATASET`` and ``encode:RANKER@DATASET``: a BM25 index, an encoded corpus;
- ``run:RANKER@DATASET``: a first stage's run (or a fusion member's), which several cells share;
- ``cell:RANKER@DATASET``: a suite cell: its run, measures and result JSON.

Each node names its cache entry (area and key, the same content address the runner uses) and
whether it is there already: a node is ``cached`` when its entry exists, a cell when its result
is up to date. Nothing is built, trained or ranked to plan.

``shard(i, n)``: the i-th of n shares of the cells (round-robin over the suite's cells in suite
order, so every cell is in exactly one share and the shares differ by at most one cell), with
the nodes they need. A scheduler (SLURM array, CI matrix, Ray) runs one share per job on one
cache home; the cache's per-entry lock makes a node two shares need run once.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

from .errors import ConfigError
from .pipeline import first_stage_k

STEPS = ("train", "export", "index", "encode", "run", "cell")


@dataclass
class Node:
    id: str                    # STEP:WHAT, e.g. "cell:minilm@scifact"
    step: str                  # one of STEPS
    what: str                  # in words
    ranker: str | None = None
    dataset: str | None = None
    recipe: str | None = None
    k: int | None = None       # run and cell: the depth ranked
    area: str | None = None    # its cache entry (a cell: the result JSON's run entry)
    key: str | None = None
    cached: bool = False
    deps: list[str] = field(default_factory=list)
    timed: bool = False        # its figures are efficiency figures: run alone on its node
    reranking: bool = False    # index and encode: prepared only to rerank a first stage

    def as_json(self) -> dict:
        return {"id": self.id, "step": self.step, "what": self.what, "cached": self.cached,
                "deps": list(self.deps), "timed": self.timed, "reranking": self.reranking,
                **{k: v for k, v in (("ranker", self.ranker), ("dataset", self.dataset), ("recipe", self.recipe),
                                     ("k", self.k), ("area", self.area), ("key", self.key)) if v is not None}}


class Plan:
    def __init__(self, suite: str, nodes: dict[str, Node]):
        self.suite = suite
        self.nodes = nodes          # in dependency order: every node after the nodes it needs

    def __iter__(self):
        return iter(self.nodes.values())

    def __len__(self) -> int:
        return len(self.nodes)

    def cells(self) -> list[Node]:
        return [n for n in self if n.step == "cell"]

    def needs(self, ids: Iterable[str]) -> list[str]:
        """The given nodes and every node they need, in plan order."""
        want: set[str] = set()
        todo = list(ids)
        while todo:
            i = todo.pop()
            if i not in want:
                want.add(i)
                todo += self.nodes[i].deps
        return [i for i in self.nodes if i in want]

    def shard(self, index: int, count: int) -> "Plan":
        """Share ``index`` (0-based) of ``count``: its cells and what they need."""
        if count < 1 or not 0 <= index < count:
            raise ConfigError(f"--shard {index + 1}/{count}: a shard is I/N with 1 <= I <= N")
        mine = [c.id for j, c in enumerate(self.cells()) if j % count == index]
        return Plan(self.suite, {i: self.nodes[i] for i in self.needs(mine)})

    def todo(self) -> list[Node]:
        """The nodes not cached (a cell: not up to date)."""
        return [n for n in self if not n.cached]

    def as_json(self) -> dict:
        return {"suite": self.suite, "nodes": [n.as_json() for n in self],
                "counts": {s: {"total": sum(n.step == s for n in self), "cached": sum(n.step == s and n.cached for n in self)}
                           for s in STEPS}}

    def render(self) -> str:
        """The plan as text: one line per node, indented under a header per step."""
        lines = [f"plan of suite {self.suite}: {len(self)} nodes, {len(self.todo())} to do"]
        for step in STEPS:
            nodes = [n for n in self if n.step == step]
            if not nodes:
                continue
            done = sum(n.cached for n in nodes)
            lines.append(f"{step} ({len(nodes)}, {done} cached)")
            for n in nodes:
                mark = "cached " if n.cached else "to do  "
                needs = f"  <- {', '.join(n.deps)}" if n.deps else ""
                lines.append(f"  {mark}{n.id}  {n.what}{needs}")
        return "\n".join(lines)


def parse_shard(text: str) -> tuple[int, int]:
    """``I/N`` (1-based, as SLURM and CI matrices count) -> (I - 1, N)."""
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise ConfigError(f"--shard {text!r}: give I/N, e.g. 1/4 (the first of four shares)") from None
    if n < 1 or not 1 <= i <= n:
        raise ConfigError(f"--shard {text}: a shard is I/N with 1 <= I <= N")
    return i - 1, n


class Planner:
    """Builds a suite's plan from a Runner (its config, rankers and cache): nothing runs."""

    def __init__(self, runner):
        self.runner = runner
        self.nodes: dict[str, Node] = {}
        self._by_entry: dict[tuple, str] = {}

    def _add(self, node: Node) -> str:
        """Add a node once; a node whose cache entry is another's (an export two rankers share,
        one name extending another) is that node."""
        if node.id in self.nodes:
            return node.id
        same = (node.area, node.key)
        if node.step != "cell" and node.key is not None and same in self._by_entry:
            return self._by_entry[same]
        self.nodes[node.id] = node
        if node.step != "cell" and node.key is not None:
            self._by_entry[same] = node.id
        return node.id

    # -- models --------------------------------------------------------------------------------

    def models(self, ranker: str) -> list[str]:
        """The train and export nodes of every model the ranker's closure loads."""
        ids: list[str] = []
        for spec in self.runner.config.closure(ranker):
            for p in self.runner.instance(spec.name).planned_models():
                ids.append(self._model(p, spec.name))
        return list(dict.fromkeys(ids))

    def _model(self, p, ranker: str) -> str:
        cache = self.runner.cache
        if p.step == "train":
            recipe = p.what.removeprefix("recipe ")
            node_id = f"train:{recipe}"
            if node_id in self.nodes:
                return node_id
            teacher = self.runner.models.spec(recipe).teacher
            deps = self.models(teacher) if teacher else []
            return self._add(Node(node_id, "train", p.what, ranker=ranker, recipe=recipe, area=p.area, key=p.key,
                                  cached=cache.get(p.area, p.key) is not None, deps=deps))
        node_id = f"{p.step}:{ranker}"
        if node_id in self.nodes:
            return node_id
        spec = self.runner.config.ranker(ranker)
        source = getattr(spec.params, "source", None)
        deps = [d for d in (self.models(source) if source else [])]
        return self._add(Node(node_id, p.step, p.what, ranker=ranker, area=p.area, key=p.key,
                              cached=cache.get(p.area, p.key) is not None, deps=deps))

    # -- what ranking a dataset needs ----------------------------------------------------------

    def needs(self, ranker: str, ds_name: str, k: int, settings) -> list[str]:
        """The nodes a ranker's run on a dataset needs: its models, its indexes, the runs of its
        first stage and of its members."""
        spec = self.runner.config.ranker(ranker)
        reranking = spec.first_stage is not None
        deps = self._prepared(ranker, ds_name, reranking)
        if reranking:
            deps.append(self.run(spec.first_stage, ds_name, first_stage_k(spec.depth, settings), settings))
        cls = spec.ranker_class()
        if cls.runs_references:
            for member in cls.references(spec.params, ranker):
                if reranking:      # members score the first stage's candidates: their models and indexes
                    deps += self.needs_to_rerank(member, ds_name)
                else:
                    deps.append(self.run(member, ds_name, k, settings))
        return list(dict.fromkeys(deps))

    def needs_to_rerank(self, ranker: str, ds_name: str) -> list[str]:
        return self._prepared(ranker, ds_name, True)

    def _prepared(self, ranker: str, ds_name: str, reranking: bool) -> list[str]:
        """The ranker's models, and the indexes and encodings its prepare builds for the dataset."""
        dataset = self.runner.dataset(ds_name)
        models = self.models(ranker)
        deps = list(models)
        for p in self.runner.instance(ranker).planned(dataset, reranking):
            deps.append(self._add(Node(f"{p.step}:{ranker}@{ds_name}", p.step, p.what, ranker=ranker,
                                       dataset=ds_name, area=p.area, key=p.key, reranking=reranking,
                                       cached=self.runner.cache.get(p.area, p.key) is not None, deps=models)))
        return deps

    def run(self, ranker: str, ds_name: str, k: int, settings) -> str:
        node_id = f"run:{ranker}@{ds_name}" + (f"#k{k}" if k != settings.k else "")
        if node_id in self.nodes:
            return node_id
        deps = self.needs(ranker, ds_name, k, settings)
        dataset = self.runner.dataset(ds_name)
        key = self.runner.run_key(ranker, dataset, k)
        inst = self.runner.instance(ranker)
        return self._add(Node(node_id, "run", f"the run of {ranker} on {ds_name} (top {k})", ranker=ranker,
                              dataset=ds_name, k=k, area="runs", key=key,
                              cached=not self.runner.force and self.runner.cache.get("runs", key) is not None,
                              deps=deps, timed=not inst.precomputed))

    def cell(self, suite, ranker: str, ds_name: str) -> str:
        settings = suite.settings
        dataset = self.runner.dataset(ds_name)
        node_id = f"cell:{ranker}@{ds_name}"
        reason = self.runner.applicability(ranker, dataset)
        if reason is not None:
            return self._add(Node(node_id, "cell", f"n/a: {reason}", ranker=ranker, dataset=ds_name, k=settings.k,
                                  cached=self.runner.up_to_date(suite, ranker, ds_name)))
        deps = self.needs(ranker, ds_name, settings.k, settings)
        key = self.runner.run_key(ranker, dataset, settings.k)
        up_to_date = self.runner.up_to_date(suite, ranker, ds_name)
        what = f"{ranker} on {ds_name}"
        if not up_to_date and not self.runner.force and self.runner.cache.get("runs", key) is not None:
            what += " (its run is cached: only evaluated and written)"
        return self._add(Node(node_id, "cell", what, ranker=ranker, dataset=ds_name,
                              k=settings.k, area="runs", key=key, deps=deps, cached=up_to_date,
                              timed=not self.runner.instance(ranker).precomputed))


def plan_suite(runner, suite_name: str, rankers: Iterable[str] | None = None,
               datasets: Iterable[str] | None = None) -> Plan:
    """The suite's graph (optionally only some of its rankers and datasets), cells in suite order."""
    from .runner import suite_cells

    suite = runner.config.suite(suite_name)
    planner = Planner(runner)
    cells = suite_cells(suite, rankers, datasets)
    for r, d in cells:
        planner.cell(suite, r, d)
    # every node was added after the nodes it needs; cells (which nothing needs) go last, in suite order
    out = {i: n for i, n in planner.nodes.items() if n.step != "cell"}
    for r, d in cells:
        cell = planner.nodes[f"cell:{r}@{d}"]
        same = planner._by_entry.get((cell.area, cell.key))
        if same is not None and same not in cell.deps:
            # a cell whose run is also another cell's first stage: made once, by that run node
            cell.deps.append(same)
        out[cell.id] = cell
    return Plan(suite_name, out)
