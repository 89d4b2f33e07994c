"""bench.toml: the experiment matrix, as frozen dataclasses, validated before anything runs.

Unknown keys are errors, every reference (a suite's rankers and datasets, a ranker's first
stage, an expected figure's cell) must exist, and every ranker's parameters are checked against
its kind's ``Params`` dataclass.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from .data import DatasetSpec
from .errors import ConfigError, unknown
from .measures import parse_measures
from .params import build_params, ranged, recipe_of
from .recipe_spec import parse_recipes
from .schema import _keys, _name, _str_list, resolve_extends

DEFAULT_CONFIG = "bench.toml"


@dataclass(frozen=True)
class Settings:
    k: int = ranged(1000, ge=1)               # depth of every full-retrieval run
    seed: int = 42
    latency_queries: int = ranged(20, ge=0)   # queries timed one at a time, after warm-up
    latency_warmup: int = ranged(3, ge=0)
    alpha: float = ranged(0.05, gt=0, lt=1)   # significance level, after Holm-Bonferroni correction
    significance: str = "t-test"  # the paired test: "t-test" or "randomization" (harness/significance.py)
    permutations: int = ranged(10_000, ge=100)   # the randomization test's sign flips (exact when 2^queries is fewer)


@dataclass(frozen=True)
class RankerSpec:
    name: str
    kind: str
    params: Any                   # the kind's Params dataclass instance
    first_stage: str | None = None
    depth: int | None = None
    description: str = ""
    cls: type | None = field(default=None, compare=False, repr=False)   # a class handed to the API, not named by kind

    def ranker_class(self) -> type:
        """The Ranker class of this ranker's kind."""
        if self.cls is not None:
            return self.cls
        from rankers import load_kind

        return load_kind(self.kind, f"[rankers.{self.name}]")


@dataclass(frozen=True)
class SuiteSpec:
    name: str
    rankers: tuple[str, ...]
    datasets: tuple[str, ...]
    description: str = ""
    measures: Mapping[str, tuple[str, ...]] = field(default_factory=dict)   # dataset -> measures
    default_measures: tuple[str, ...] | None = None
    extra_measures: tuple[str, ...] = ()
    baseline: str | None = None
    settings: Settings = Settings()
    students: Mapping[str, str] = field(default_factory=dict)   # distilled ranker -> its teacher's row
    variants: Mapping[str, str] = field(default_factory=dict)   # exported/quantized ranker -> its torch source's row
    bars: Mapping[str, float] = field(default_factory=dict)     # the bars those tables judge by (BARS)


# What the Distillation and Variants tables judge by, unless a suite's bars = {...} says otherwise:
# issue 3's student (97% of the teacher's measure at 4x its pairs/s) and issue 4's quantized
# variant (99% of its source's measure at 4x, at most 30% of its size on disk).
BARS = {"kept": 0.97, "speedup": 4.0, "variant_kept": 0.99, "variant_speedup": 4.0, "variant_size": 0.30}


@dataclass(frozen=True)
class CheckSettings:
    effectiveness: float = ranged(0.0005, ge=0)   # absolute tolerance; better than the baseline is OKISH
    latency: float = ranged(0.5, ge=0)            # relative increase of median latency allowed (same machine)
    latency_slack_ms: float = ranged(1.0, ge=0)   # and an absolute one: below it, timer and scheduler noise
    latency_busy_cores: float = ranged(0.5, ge=0)  # latency timed while other processes kept more cores busy: not compared
    benchmark_slowdown: float = ranged(0.25, gt=0)   # `rankbench bench --compare`: a median slower by more fails


@dataclass(frozen=True)
class Expected:
    """A published figure a cell must reproduce, with its tolerance and source."""

    ranker: str
    dataset: str
    measure: str
    value: float
    tolerance: float = ranged(ge=0)
    source: str = ""


@dataclass(frozen=True)
class CalibrationSpec:
    """``[calibration]``: the models whose scores reports/calibration.md calibrates, and the
    (fit, test) dataset pairs. A model row names its chains: on each dataset the first one that
    applies scores the pairs (a DL set needs the chain on the published BM25 run, a BEIR set the
    one on BM25), and they must share one scorer (the same model, whatever the first stage)."""
    models: Mapping[str, tuple[str, ...]]
    pairs: tuple[tuple[str, str], ...]
    max_queries: int = 150          # fit and test queries sampled per dataset (seeded); 0: all
    bins: int = 15


@dataclass(frozen=True)
class RagSpec:
    """``[rag]``: reports/rag.md compares three pipelines on each dataset: the first stage alone
    (``retrieve``), reranked (``rerank``), and reranked with a calibrated threshold chosen for
    ``target_precision`` on the dataset's calibration split (``datasets``: test = its split).
    Each of ``retrieve`` and ``rerank`` names chains, the first that applies to a dataset is used."""
    retrieve: tuple[str, ...]
    rerank: tuple[str, ...]
    datasets: Mapping[str, str]
    budgets: tuple[int, ...] = (256, 512, 1024)
    tokenizer: str = "sentence-transformers/all-MiniLM-L6-v2"
    calibrator: str = "platt"
    target_precision: float = 0.5


@dataclass(frozen=True)
class Config:
    path: Path
    root: Path
    settings: Settings
    measure_sets: Mapping[str, tuple[str, ...]]
    datasets: Mapping[str, DatasetSpec]
    rankers: Mapping[str, RankerSpec]
    suites: Mapping[str, SuiteSpec]
    check: CheckSettings
    expected: tuple[Expected, ...]
    recipes: Mapping[str, Any] = field(default_factory=dict)    # name -> harness.recipe_spec.RecipeSpec
    calibration: CalibrationSpec | None = None
    rag: RagSpec | None = None

    def suite(self, name: str) -> SuiteSpec:
        if name not in self.suites:
            raise ConfigError(unknown("suite", name, self.suites, str(self.path)))
        return self.suites[name]

    def ranker(self, name: str) -> RankerSpec:
        if name not in self.rankers:
            raise ConfigError(unknown("ranker", name, self.rankers, str(self.path)))
        return self.rankers[name]

    def dataset(self, name: str) -> DatasetSpec:
        if name not in self.datasets:
            raise ConfigError(unknown("dataset", name, self.datasets, str(self.path)))
        return self.datasets[name]

    def evaluations(self, rankers) -> list[tuple[str, str]]:
        """(suite, dataset) for every dataset a suite evaluates with any of these rankers: what
        the leakage guards keep out of training and calibration data."""
        return [(suite.name, d) for suite in self.suites.values() if set(rankers) & set(suite.rankers)
                for d in suite.datasets]

    def closure(self, ranker: str) -> list[RankerSpec]:
        """The ranker and every ranker it is built on: first stages and members (fusion), each once."""
        out: list[RankerSpec] = []
        todo = [ranker]
        while todo:
            name = todo.pop(0)
            if any(s.name == name for s in out):
                continue
            spec = self.ranker(name)
            out.append(spec)
            todo += ([spec.first_stage] if spec.first_stage else [])
            todo += list(spec.ranker_class().references(spec.params, name))
        return out

    def chain(self, ranker: str) -> list[RankerSpec]:
        """The ranker and its first stages, outermost first."""
        out, name = [], ranker
        while name is not None:
            spec = self.rankers[name]
            out.append(spec)
            name = spec.first_stage
        return out


def _settings(table: Mapping, where: str, base: Settings = Settings()) -> Settings:
    merged = {**dataclasses.asdict(base), **table}
    s = build_params(Settings, merged, where)
    from .significance import TESTS

    if s.significance not in TESTS:
        raise ConfigError(f"{where}: significance = {s.significance!r}; use one of {', '.join(map(repr, TESTS))}")
    return s


def load_config(path: str | Path = DEFAULT_CONFIG) -> Config:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: config file not found (run from the project root or pass --config)")
    from .files import read_toml

    raw = read_toml(path, ConfigError)
    return parse_config(raw, path)


def parse_config(raw: Mapping, path: Path) -> Config:
    where = str(path)
    _keys(raw, {"settings", "measures", "datasets", "rankers", "suites", "check", "expected", "recipes",
                "calibration", "rag"}, where)
    settings = _settings(raw.get("settings", {}), f"{where} [settings]")

    measure_sets: dict[str, tuple[str, ...]] = {}
    for name, ms in raw.get("measures", {}).items():
        w = f"{where} [measures] {name}"
        measure_sets[name] = _str_list(ms, w)
        parse_measures(measure_sets[name], w)

    datasets: dict[str, DatasetSpec] = {}
    for name, spec in raw.get("datasets", {}).items():
        w = f"{where} [datasets.{name}]"
        _name(name, w)
        if isinstance(spec, str):
            spec = {"source": spec}
        _keys(spec, {"source", "split", "conventions", "seed_from", "description"}, w)
        if "source" not in spec:
            raise ConfigError(f"{w}: needs source = \"local:PATH\" or \"irds:ID\"")
        ds = build_params(DatasetSpec, {"name": name, **spec}, w)
        if ds.scheme not in ("local", "irds") or not ds.location:
            raise ConfigError(f"{w}: source {ds.source!r} must be \"local:PATH\" or \"irds:ID\"")
        if ds.seed_from and ds.scheme != "irds":
            raise ConfigError(f"{w}: seed_from only applies to irds: sources")
        datasets[name] = ds

    rankers = _parse_rankers(raw.get("rankers", {}), where)

    recipes = parse_recipes(raw.get("recipes", {}), datasets, rankers, where)
    for name, spec in rankers.items():
        used = recipe_of(spec.params)
        if used is not None and used not in recipes:
            raise ConfigError(unknown("recipe", used, recipes, f"{where} [rankers.{name}] model"))
        if used is not None and spec.kind in ("cross-encoder", "bi-encoder") and recipes[used].produces != spec.kind:
            raise ConfigError(f"{where} [rankers.{name}]: kind {spec.kind!r} cannot load recipe {used!r}, "
                              f"which produces a {recipes[used].produces}")

    suites: dict[str, SuiteSpec] = {}
    for name, table in raw.get("suites", {}).items():
        w = f"{where} [suites.{name}]"
        _name(name, w)
        _keys(table, {"rankers", "datasets", "description", "measures", "extra_measures", "baseline",
                      "settings", "students", "variants", "bars"}, w)
        for key in ("rankers", "datasets"):
            if key not in table:
                raise ConfigError(f"{w}: needs {key} = [...]")
        rs = _str_list(table["rankers"], f"{w} rankers")
        dss = _str_list(table["datasets"], f"{w} datasets")
        for r in rs:
            if r not in rankers:
                raise ConfigError(unknown("ranker", r, rankers, w))
        for d in dss:
            if d not in datasets:
                raise ConfigError(unknown("dataset", d, datasets, w))
        per_ds: dict[str, tuple[str, ...]] = {}
        default = None
        m = table.get("measures")
        if m is not None:
            if isinstance(m, Mapping):
                for d, v in m.items():
                    if d not in dss:
                        raise ConfigError(unknown("dataset of this suite", d, dss, f"{w} measures"))
                    per_ds[d] = _measure_ref(v, measure_sets, f"{w} measures.{d}")
            else:
                default = _measure_ref(m, measure_sets, f"{w} measures")
        extra = _str_list(table.get("extra_measures", []), f"{w} extra_measures")
        parse_measures(extra, f"{w} extra_measures")
        baseline = table.get("baseline")
        if baseline is not None and baseline not in rs:
            raise ConfigError(unknown("baseline ranker (it must be one of the suite's rankers)",
                                      str(baseline), rs, w))
        pairs = {}
        for key, roles in (("students", ("student", "teacher")), ("variants", ("variant", "source"))):
            pairs[key] = table.get(key, {})
            if not isinstance(pairs[key], Mapping):
                raise ConfigError(f"{w} {key}: must be a table {{{roles[0]} ranker = \"{roles[1]} ranker\"}}")
            for a, b in pairs[key].items():
                for role, r in zip(roles, (a, b)):
                    if r not in rs:
                        raise ConfigError(unknown(f"{role} ranker (it must be one of the suite's rankers)",
                                                  str(r), rs, f"{w} {key}"))
        bars = table.get("bars", {})
        if not isinstance(bars, Mapping):
            raise ConfigError(f"{w} bars: must be a table, e.g. {{speedup = 10.0}}")
        for k, v in bars.items():
            if k not in BARS:
                raise ConfigError(unknown("bar", k, BARS, f"{w} bars"))
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0:
                raise ConfigError(f"{w} bars.{k}: must be a positive number, found {v!r}")
        suites[name] = SuiteSpec(name=name, rankers=rs, datasets=dss, description=table.get("description", ""),
                                 measures=per_ds, default_measures=default, extra_measures=extra,
                                 baseline=baseline, students=dict(pairs["students"]),
                                 variants=dict(pairs["variants"]), bars={**BARS, **bars},
                                 settings=_settings(table.get("settings", {}), f"{w} settings", settings))

    check_raw = raw.get("check", {})
    _keys(check_raw, {f.name for f in dataclasses.fields(CheckSettings)}, f"{where} [check]")
    check = build_params(CheckSettings, check_raw, f"{where} [check]")

    expected = []
    for i, e in enumerate(raw.get("expected", []), 1):
        w = f"{where} [[expected]] #{i}"
        _keys(e, {"ranker", "dataset", "measure", "value", "tolerance", "source"}, w)
        ex = build_params(Expected, e, w)
        if ex.ranker not in rankers:
            raise ConfigError(unknown("ranker", ex.ranker, rankers, w))
        if ex.dataset not in datasets:
            raise ConfigError(unknown("dataset", ex.dataset, datasets, w))
        parse_measures([ex.measure], w)
        expected.append(ex)

    calibration = _calibration(raw["calibration"], rankers, datasets, f"{where} [calibration]") \
        if "calibration" in raw else None
    rag = _rag(raw["rag"], rankers, datasets, f"{where} [rag]") if "rag" in raw else None
    return Config(path=path, root=path.parent.resolve(), settings=settings, measure_sets=measure_sets,
                  datasets=datasets, rankers=rankers, suites=suites, check=check, expected=tuple(expected),
                  recipes=recipes, calibration=calibration, rag=rag)


def _rag(table: Any, rankers: Mapping, datasets: Mapping, where: str) -> RagSpec:
    if not isinstance(table, Mapping):
        raise ConfigError(f"{where}: must be a table")
    _keys(table, {f.name for f in dataclasses.fields(RagSpec)}, where)
    chains = {}
    for key in ("retrieve", "rerank"):
        chains[key] = _ranker_list(table.get(key), rankers, f"{where} {key}")
    ds = table.get("datasets")
    if not isinstance(ds, Mapping) or not ds:
        raise ConfigError(f'{where} datasets: a table of test dataset = its calibration split, e.g. dl20 = "dl19"')
    for test, fit_on in ds.items():
        for d in (test, fit_on):
            if not isinstance(d, str) or d not in datasets:
                raise ConfigError(unknown("dataset", str(d), datasets, f"{where} datasets.{test}"))
        if test == fit_on:
            raise ConfigError(f"{where} datasets.{test}: the threshold must be chosen on another split")
    budgets = table.get("budgets", [256, 512, 1024])
    if (not isinstance(budgets, list) or not budgets
            or not all(isinstance(b, int) and not isinstance(b, bool) and b > 0 for b in budgets)):
        raise ConfigError(f"{where} budgets: a list of positive token counts, found {budgets!r}")
    target = table.get("target_precision", 0.5)
    if isinstance(target, bool) or not isinstance(target, (int, float)) or not 0 < target <= 1:
        raise ConfigError(f"{where} target_precision: in (0, 1], found {target!r}")
    method = table.get("calibrator", "platt")
    if method not in ("identity", "temperature", "platt", "isotonic"):
        raise ConfigError(f"{where} calibrator: one of identity, temperature, platt, isotonic; found {method!r}")
    tok = table.get("tokenizer", "sentence-transformers/all-MiniLM-L6-v2")
    if not isinstance(tok, str) or not tok:
        raise ConfigError(f"{where} tokenizer: a Hugging Face tokenizer name or folder, found {tok!r}")
    return RagSpec(retrieve=chains["retrieve"], rerank=chains["rerank"], datasets=dict(ds),
                   budgets=tuple(budgets), tokenizer=tok, calibrator=method, target_precision=float(target))


def _ranker_list(value: Any, rankers: Mapping, where: str) -> tuple[str, ...]:
    """A ranker name or a non-empty list of them, each defined in bench.toml."""
    got = [value] if isinstance(value, str) else value
    if not isinstance(got, list) or not got or not all(isinstance(c, str) for c in got):
        raise ConfigError(f"{where}: a list of ranker names, found {value!r}")
    for c in got:
        if c not in rankers:
            raise ConfigError(unknown("ranker", c, rankers, where))
    return tuple(got)


def _calibration(table: Any, rankers: Mapping, datasets: Mapping, where: str) -> CalibrationSpec:
    if not isinstance(table, Mapping):
        raise ConfigError(f"{where}: must be a table")
    _keys(table, {"models", "pairs", "max_queries", "bins"}, where)
    models = table.get("models")
    if not isinstance(models, Mapping) or not models:
        raise ConfigError(f"{where} models: a table of model name = [its chains], e.g. "
                          f'minilm = ["minilm-rerank-bm25run", "minilm-rerank-bm25"]')
    out = {}
    for name, chains in models.items():
        out[name] = _ranker_list(chains, rankers, f"{where} models.{name}")
    pairs = table.get("pairs")
    if not isinstance(pairs, list) or not pairs:
        raise ConfigError(f'{where} pairs: a list of [fit dataset, test dataset], e.g. [["dl19", "dl20"]]')
    got = []
    for i, pair in enumerate(pairs, 1):
        w = f"{where} pairs #{i}"
        if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(d, str) for d in pair)):
            raise ConfigError(f"{w}: [fit dataset, test dataset], found {pair!r}")
        for d in pair:
            if d not in datasets:
                raise ConfigError(unknown("dataset", d, datasets, w))
        if pair[0] == pair[1]:
            raise ConfigError(f"{w}: fitting and testing on {pair[0]} measures nothing held out")
        got.append((pair[0], pair[1]))
    max_queries, bins = table.get("max_queries", 150), table.get("bins", 15)
    if isinstance(max_queries, bool) or not isinstance(max_queries, int) or max_queries < 0:
        raise ConfigError(f"{where} max_queries: a whole number >= 0, found {max_queries!r}")
    if isinstance(bins, bool) or not isinstance(bins, int) or not 2 <= bins <= 100:
        raise ConfigError(f"{where} bins: a whole number from 2 to 100, found {bins!r}")
    return CalibrationSpec(models=out, pairs=tuple(got), max_queries=max_queries, bins=bins)


def _measure_ref(value: Any, sets: Mapping[str, tuple[str, ...]], where: str) -> tuple[str, ...]:
    """A named measure set ("dl") or an explicit list of measure strings."""
    if isinstance(value, str):
        if value not in sets:
            raise ConfigError(unknown("measure set", value, sets, where))
        return sets[value]
    ms = _str_list(value, where)
    parse_measures(ms, where)
    return ms


def ranker_spec(name: str, kind: str, cls: type, table: Mapping, known: Mapping, where: str,
                keep_class: bool = False) -> RankerSpec:
    """One ranker's table (without its kind) checked against its class: parameters, first stage
    (one of ``known``) and depth."""
    table = dict(table)
    first_stage = table.pop("first_stage", None)
    depth = table.pop("depth", None)
    description = table.pop("description", "")
    params = build_params(cls.Params, table, where)
    if first_stage is not None:
        if first_stage not in known:
            raise ConfigError(unknown("first_stage ranker", str(first_stage), known, where))
        if not cls.reranks:
            raise ConfigError(f"{where}: kind {kind!r} cannot rerank, so it cannot have a first_stage")
        if depth is None:
            depth = 100
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
            raise ConfigError(f"{where}: depth must be a positive integer, found {depth!r}")
    elif depth is not None:
        raise ConfigError(f"{where}: depth needs a first_stage to cut")
    return RankerSpec(name=name, kind=kind, params=params, first_stage=first_stage, depth=depth,
                      description=description, cls=cls if keep_class else None)


def _parse_rankers(tables: Mapping, where: str) -> dict[str, RankerSpec]:
    from rankers import load_kind

    resolve = resolve_extends(tables, "rankers", where)

    out: dict[str, RankerSpec] = {}
    for name in tables:
        w = f"{where} [rankers.{name}]"
        _name(name, w)
        table = dict(resolve(name))
        if "kind" not in table:
            raise ConfigError(f"{w}: needs kind = \"...\"")
        kind = table.pop("kind")
        out[name] = ranker_spec(name, kind, load_kind(kind, w), table, tables, w)
    # Edges: a ranker's first stage and the rankers it is built on (a fusion's members).
    edges: dict[str, tuple[str, ...]] = {}
    for name, spec in out.items():
        w = f"{where} [rankers.{name}]"
        cls = spec.ranker_class()
        refs = cls.references(spec.params, w)
        for r in refs:
            if r not in out:
                raise ConfigError(unknown("ranker", r, out, f"{w} {cls.references_key}"))
        cls.check_references(spec.params, out, w)
        edges[name] = ((spec.first_stage,) if spec.first_stage else ()) + tuple(refs)

    def visit(name: str, path: tuple[str, ...]) -> None:
        if name in path:
            raise ConfigError(f"{where} [rankers.{path[0]}]: rankers form a cycle (first_stage or "
                              f"members): " + " -> ".join(path + (name,)))
        for nxt in edges[name]:
            visit(nxt, path + (name,))

    for name in out:
        visit(name, ())
    return out


def with_ranker(config: Config, name: str, kind: "str | type", table: Mapping) -> Config:
    """The config with one more ranker (the Python API's ``add_ranker``), checked as bench.toml's
    rankers are. ``kind`` is a kind name, a "module:Class" path, or a Ranker class itself."""
    from rankers import load_kind
    from rankers.base import Ranker

    where = f"ranker {name!r}"
    _name(name, where)
    if name in config.rankers:
        raise ConfigError(f"{where}: {config.path} already has a ranker of that name")
    if isinstance(kind, type):
        if not issubclass(kind, Ranker):
            raise ConfigError(f"{where}: {kind.__qualname__} is not a ranker: subclass rankers.base.Ranker "
                              f"(or PairScorer, to score pairs)")
        cls, kind_name = kind, kind.kind or f"{kind.__module__}:{kind.__qualname__}"
    elif isinstance(kind, str):
        cls, kind_name = load_kind(kind, where), kind
    else:
        raise ConfigError(f"{where}: kind must be a kind name, \"module:Class\" or a Ranker class, found {kind!r}")
    spec = ranker_spec(name, kind_name, cls, table, config.rankers, where, keep_class=isinstance(kind, type))
    for r in cls.references(spec.params, where):
        if r not in config.rankers:
            raise ConfigError(unknown("ranker", r, config.rankers, f"{where} {cls.references_key}"))
    rankers = {**config.rankers, name: spec}
    cls.check_references(spec.params, rankers, where)
    return dataclasses.replace(config, rankers=rankers)
