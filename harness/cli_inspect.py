"""The commands that look at a project without running anything: ls, validate, seed-irds,
manifest; and how every command loads the config."""
from __future__ import annotations

import os
from pathlib import Path

from .errors import RankbenchError


def load(args):
    """The config and the reports folder a command's --config and --reports name."""
    from .config import load_config

    config = load_config(args.config)
    reports = Path(args.reports) if args.reports else config.root / "reports"
    return config, reports


def cmd_ls(args) -> int:
    from rankers import all_kinds

    from .conventions import CONVENTIONS

    config, _ = load(args)
    show = args.what
    if show in ("all", "datasets"):
        print("datasets:")
        for name, d in config.datasets.items():
            extra = f" split={d.split}" if d.scheme == "local" and d.split != "test" else ""
            print(f"  {name:<16} {d.source}{extra}" + (f"  (seed_from {d.seed_from})" if d.seed_from else ""))
    if show in ("all", "rankers"):
        print("rankers:")
        for name, r in config.rankers.items():
            chain = f"  reranks {r.first_stage} top {r.depth}" if r.first_stage else ""
            print(f"  {name:<24} {r.kind:<11}{chain}" + (f"  {r.description}" if r.description else ""))
    if show in ("all", "suites"):
        print("suites:")
        for name, s in config.suites.items():
            print(f"  {name:<8} {len(s.rankers)} rankers × {len(s.datasets)} datasets: {', '.join(s.datasets)}")
    if show in ("all", "measures"):
        print("measure sets (any ir_measures string also works, e.g. P@10, Success@10, RR(rel=2)@10):")
        for name, ms in config.measure_sets.items():
            print(f"  {name:<8} {', '.join(ms)}")
        print("dataset conventions:")
        for c in CONVENTIONS.values():
            print(f"  {c.name:<8} {', '.join(c.measures)}  ({c.description})")
    if show in ("all", "kinds"):
        print("ranker kinds:")
        for kind, target in sorted(all_kinds().items()):
            print(f"  {kind:<11} {target}")
    return 0


def _usable_folder(path: Path, what: str, setting: str) -> None:
    """validate writes nothing: a folder rankbench will write must be a writable folder, or not
    exist yet under a writable parent."""
    from .errors import StorageError

    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if probe == path and not path.is_dir():
        raise StorageError(f"{path}: the {what} must be a folder, but a file is there ({setting})")
    if not probe.is_dir():
        raise StorageError(f"{path}: the {what} cannot be created: {probe} is a file ({setting})")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise StorageError(f"{path}: the {what} is not writable ({setting})")


def cmd_validate(args) -> int:
    from .cache import rankbench_home
    from .check import read_baselines
    from .data import check_run_file, open_dataset
    from rankers.runfile import run_file_path

    from .types import read_trec_run

    config, reports = load(args)
    print(f"{config.path}: {len(config.datasets)} datasets, {len(config.rankers)} rankers, "
          f"{len(config.suites)} suites, {len(config.expected)} published figures: config OK")
    _usable_folder(reports, "reports folder", "--reports")
    _usable_folder(rankbench_home(), "cache home", "RANKBENCH_HOME")
    baselines = read_baselines(reports)
    print(f"{reports}: writable; baselines for {len(baselines)} suites OK")
    if args.config_only:
        return 0
    opened = {}
    for name, spec in config.datasets.items():
        ds = opened[name] = open_dataset(spec, config.root)
        ds.validate()
        if spec.scheme == "local":
            s = ds.stats()
            print(f"  {name:<16} OK  {s['queries']} queries, {s['judgments']} judgments"
                  + (f", {s['docs']} docs" if "docs" in s else "") + (f", runs: {', '.join(ds.run_names())}"
                                                                      if ds.run_names() else ""))
            for warning in ds.warnings():
                print(f"  {'':<16} warning: {warning}")
        else:
            print(f"  {name:<16} OK  ir_datasets id exists (not downloaded)")
    # run files named by path: each one a suite will read, against each of its datasets
    for rname, rspec in config.rankers.items():
        path_param = getattr(rspec.params, "path", None) if rspec.kind == "run" else None
        if path_param is None:
            continue
        for suite in config.suites.values():
            for d in suite.datasets if rname in suite.rankers else ():
                ds = opened[d]
                if config.dataset(d).scheme != "local":
                    continue
                p = run_file_path(path_param, d, config.root)
                if p.exists():
                    run = check_run_file(read_trec_run(p), p, ds)
                    print(f"  {rname:<16} OK  {p}: {len(run)} queries of {d}")
    return 0


def cmd_seed_irds(args) -> int:
    from .data import irds_home, seed_irds

    config, _ = load(args)
    spec = config.dataset(args.dataset)
    if spec.scheme != "irds" or not spec.seed_from:
        raise RankbenchError(f"[datasets.{args.dataset}] must be an irds: source with seed_from = \"<folder>\"")
    written = seed_irds(spec.location, config.root / spec.seed_from, irds_home())
    for w in written:
        print(f"wrote {w}")
    if not written:
        print(f"ir_datasets' cache ({irds_home()}) already holds {spec.location}")
    return 0


def cmd_manifest(args) -> int:
    from .data import write_manifest

    folder = Path(args.folder)
    if not folder.is_dir():
        raise RankbenchError(f"{folder}: not a folder")
    print(f"wrote {write_manifest(folder)}")
    return 0
