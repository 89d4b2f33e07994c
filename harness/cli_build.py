"""The commands that build or measure things beside a suite's cells: plan, train, export, bench,
compare, scale. Each loads the config as every command does (``cli_inspect.load``)."""
from __future__ import annotations

import sys
from pathlib import Path

from .cli_inspect import load as _load


def cmd_plan(args) -> int:
    import json

    from .plan import parse_shard, plan_suite
    from .runner import Runner

    config, reports = _load(args)
    runner = Runner(config, reports, progress=False)
    plan = plan_suite(runner, args.suite, args.ranker, args.dataset)
    if args.shard:
        plan = plan.shard(*parse_shard(args.shard))
    print(json.dumps(plan.as_json(), indent=1) if args.json else plan.render())
    return 0


def cmd_scale(args) -> int:
    from .errors import ConfigError

    if not args.report:
        raise ConfigError("rankbench scale measures for minutes: give --report to measure and write reports/scale.md")
    from distributed.common import require_ray

    require_ray()
    from distributed.scale import measure, write

    config, reports = _load(args)
    data = measure(str(config.path), reports, passages=args.passages, shards=args.shards)
    print(f"wrote {write(reports, data)}", file=sys.stderr)
    return 0


def cmd_train(args) -> int:
    import json

    from .errors import ConfigError, unknown
    from .params import recipe_of
    from .runner import Runner

    config, reports = _load(args)
    if args.ranker in config.recipes:
        recipe = args.ranker
    elif args.ranker in config.rankers:
        recipe = recipe_of(config.rankers[args.ranker].params)
        if recipe is None:
            raise ConfigError(f"[rankers.{args.ranker}] is not trained here (its model is not \"recipe:NAME\")")
    else:
        raise ConfigError(unknown("ranker or recipe", args.ranker, list(config.rankers) + list(config.recipes),
                                  str(config.path)))
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    runner = Runner(config, reports, progress=not args.no_progress, threads=args.threads)
    if args.data_only:
        data = runner.models.training_data(recipe)
        print(json.dumps(data.report, indent=1, sort_keys=True))
        return 0
    path, entry = runner.models.build(recipe, force=args.force)
    print(f"recipe {recipe}: model in {path} (built in {entry.get('build_seconds', '?')} s)")
    return 0


def cmd_export(args) -> int:
    from .errors import ConfigError
    from .files import tree_bytes
    from .runner import Runner

    config, reports = _load(args)
    for name in args.ranker:
        if config.ranker(name).kind != "onnx":
            raise ConfigError(f"[rankers.{name}] is a {config.ranker(name).kind!r} ranker; "
                              f"rankbench export builds kind \"onnx\" rankers")
    runner = Runner(config, reports, progress=False, threads=args.threads)
    for name in args.ranker:
        folder, entry = runner.instance(name).export()
        print(f"{name}: {folder} ({tree_bytes(folder) / 1e6:.1f} MB, built in {entry.get('build_seconds', '?')} s)")
    return 0


def cmd_bench(args) -> int:
    from .bench import run

    config, reports = _load(args)
    return run(config, reports, compare=args.compare, save=not args.no_save, threads=args.threads,
               select=args.select, slowdown=args.max_slowdown)


def cmd_compare(args) -> int:
    from .compare import CompareArgs, compare
    from .files import atomic_write_text

    config, reports = _load(args)
    text = compare(config, reports, CompareArgs(args.a, args.b, args.dataset, args.suite, args.measure,
                                                args.top, args.judged), progress=False)
    if args.out:
        atomic_write_text(Path(args.out), text + "\n")
        print(f"wrote {args.out}", file=sys.stderr)
    else:
        print(text)
    return 0
