"""``rankbench run SUITE --executor ray [--address ADDR]``: the suite's plan as Ray tasks.

Every node of the plan that is not cached becomes one Ray task, started once the tasks it needs
have finished (Ray's scheduler, not ours). Each task runs the same code the local executor runs
(``Runner.get_run``, ``Runner.run_cell``, ``TrainedModels.build``, a ranker's ``prepare``) in a
worker process that keeps one Runner for the tasks it is given; so its runs, measures and result
JSON are the local run's. What makes that safe on a cluster:

- The cache home (``RANKBENCH_HOME``) and the reports folder are paths every node sees (NFS or
  another shared mount); the driver passes both, and the environment that matters, to its tasks.
- A cache entry is built under its lock by one worker; another that wants it waits, then reads
  it. Entries are written under a temporary name and renamed into place, so a half-written one
  is never read, and a killed worker's leftovers are removed by the next sweep (run at the end).
- Timed nodes (a run or cell that ranks live: its latency and throughput are leaderboard
  figures) run alone on their node: every task asks for a share of the custom resource
  ``rankbench_node`` (one per node), a timed one for all of it. Each result names the node.
- A worker that dies has its task retried by Ray (``max_retries``); finished cells are files.
- The report is written once, at the end, by the driver (``harness.cli``).
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Callable, Iterable

from harness.config import Config
from harness.errors import ConfigError, RankbenchError
from harness.plan import Plan, plan_suite
from harness.runner import CellOutcome, Runner

from .common import RESOURCE, RETRIES, SHARE, _runner, require_ray, task_env, where

def connect(address: str | None, log: Callable[[str], None]) -> bool:
    """Join the cluster at ``address`` (``auto``: the one this machine runs), or start one on
    this machine; True when this call started or joined it (and so shuts it down). An already
    initialised session (a test's, a notebook's) is used as it is."""
    ray = require_ray()
    if ray.is_initialized():
        started = False
    else:
        t0 = time.perf_counter()
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(num_cpus=os.cpu_count() or 1, resources={RESOURCE: 1.0}, include_dashboard=False,
                     log_to_driver=False)
        log(f"ray: {'joined ' + address if address else 'started a local cluster'} in "
            f"{time.perf_counter() - t0:.1f} s")
        started = True
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    without = [n["NodeManagerAddress"] for n in nodes if n.get("Resources", {}).get(RESOURCE, 0) < 1]
    if len(without) == len(nodes):
        raise ConfigError(f"no node of the Ray cluster has the resource {RESOURCE!r}, which rankbench's tasks ask "
                          f"for (it keeps timed cells alone on their node): start each node with "
                          f"ray start ... --resources='{{\"{RESOURCE}\": 1}}'")
    if without:
        log(f"ray: nodes {', '.join(without)} lack the resource {RESOURCE!r}; rankbench runs nothing there")
    return started


def execute(config_path: str, reports: str, node: dict, force: bool, threads: int, *deps: dict) -> dict:
    """Do one plan node (in a Ray worker); a dict saying how it went, never an exception for a
    RankbenchError or a bug (a failed node fails its dependents, not the suite)."""
    import traceback

    t0 = time.perf_counter()
    failed = [d for d in deps if d.get("status") == "error"]
    base = {"id": node["id"], "where": where()}
    if failed:
        return {**base, "status": "error", "seconds": 0.0,
                "message": f"not run: it needs {failed[0]['id']}, which failed: {failed[0]['message']}"}
    # a timed node has its node to itself: all its cores, as a local run has them
    runner = _runner(config_path, reports, force, threads or os.cpu_count() or 1)
    step = node["step"]
    try:
        if step == "train":
            runner.models.build(node["recipe"])
            status, message = "built", ""
        elif step == "export":
            runner.rankers.resolve(node["ranker"])
            status, message = "built", ""
        elif step in ("index", "encode"):
            runner.rankers.resolve(node["ranker"])
            runner.rankers.prepare_stage(node["ranker"], runner.dataset(node["dataset"]), node.get("reranking", False))
            status, message = "built", ""
        elif step == "run":
            suite = runner.config.suite(node["suite"])
            _, _, status = runner.get_run(node["ranker"], runner.dataset(node["dataset"]), node["k"], suite.settings)
            message = ""
        elif step == "cell":
            suite = runner.config.suite(node["suite"])
            out = runner.run_cell(suite, node["ranker"], node["dataset"])
            status, message = out.status, out.message
        else:
            raise ConfigError(f"unknown plan step {step!r}")
    except RankbenchError as e:
        status, message = "error", str(e)
    except Exception as e:   # a bug in one node must not cost the others
        status, message = "error", f"{type(e).__name__}: {e}\n{traceback.format_exc()}"
    return {**base, "status": status, "message": message, "seconds": round(time.perf_counter() - t0, 3)}


# -- the driver side -------------------------------------------------------------------------------

def run_suite(config: Config, reports: Path, suite_name: str, rankers: Iterable[str] | None = None,
              datasets: Iterable[str] | None = None, shard: tuple[int, int] | None = None,
              force: bool = False, threads: int = 0, address: str | None = None,
              encode_actors: int | None = None, log: Callable[[str], None] | None = None) -> list[CellOutcome]:
    """The suite's cells on Ray: what ``Runner.run_suite`` gives, computed by the cluster.
    Corpora are encoded on Ray Data by ``encode_actors`` actors (default one per node; 0: each
    as one task), into the entries the cells read."""
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    reports = Path(reports).resolve()
    runner = Runner(config, reports, progress=False, force=force, threads=threads, log=log)
    runner.preflight(suite_name)
    plan = plan_suite(runner, suite_name, rankers, datasets)
    if shard is not None:
        plan = plan.shard(*shard)
    started = connect(address, log)
    ray = require_ray()
    try:
        config_path = str(Path(config.path).resolve())
        actors = _encode_actors(ray, encode_actors)
        if actors > 0:
            _encode_first(ray, plan, config_path, str(reports), runner, force, threads, actors, log)
        outcomes = _execute(ray, plan, config_path, str(reports), runner, force, threads, log)
    finally:
        if started:
            ray.shutdown()
    for gone in runner.cache.sweep():
        log(f"removed {gone}, left by a worker that was killed")
    return outcomes


def _encode_actors(ray, requested: int | None) -> int:
    if requested is not None:
        return requested
    nodes = [n for n in ray.nodes() if n.get("Alive") and n.get("Resources", {}).get(RESOURCE, 0) >= 1]
    return max(1, len(nodes))


def _encode_first(ray, plan: Plan, config_path: str, reports: str, runner: Runner, force: bool, threads: int,
                  actors: int, log: Callable[[str], None]) -> None:
    """The corpora the plan encodes, on Ray Data, before the tasks that read them: the models
    they need first (as tasks), then each corpus on the actor pool. The plan's encode nodes are
    then cached, so no task encodes."""
    from .encode import encode_on_ray

    encodes = [n for n in plan.todo() if n.step == "encode"]
    if not encodes:
        return
    models = Plan(plan.suite, {i: plan.nodes[i] for i in plan.needs([d for n in encodes for d in n.deps])})
    if models.todo():
        failed = [o for o in _execute(ray, models, config_path, reports, runner, force, threads, log, cells_only=False)
                  if o.status == "error"]
        if failed:
            return     # the encode tasks then fail with their dependencies, and say why
        for n in models.todo():
            n.cached = True
    for node in encodes:
        try:
            encode_on_ray(runner, node.ranker, node.dataset, actors, config_path, reports, log=log)
            node.cached = True
        except RankbenchError as e:
            log(f"ray data: {node.id}: {e}; it is encoded as a task instead")


def _execute(ray, plan: Plan, config_path: str, reports: str, runner: Runner, force: bool, threads: int,
             log: Callable[[str], None], cells_only: bool = True) -> list[CellOutcome]:
    """Every node of the plan not cached, as a task after the tasks it needs; the outcome of each
    cell (``cells_only``), or of each node."""
    remote = ray.remote(execute)
    env = {"env_vars": task_env(runner.cache.home)}
    refs: dict[str, object] = {}
    done: dict[str, dict] = {}
    for node in plan:
        if node.cached:     # in the cache, or a cell whose result is up to date
            if node.step == "cell":
                done[node.id] = {"id": node.id, "status": "up-to-date", "message": "", "seconds": 0.0}
            continue
        payload = {**node.as_json(), "suite": plan.suite}
        deps = [refs[d] for d in node.deps if d in refs]
        share = 1.0 if node.timed else SHARE
        refs[node.id] = remote.options(num_cpus=SHARE, resources={RESOURCE: share}, max_retries=RETRIES,
                                       runtime_env=env, name=node.id).remote(
            config_path, reports, payload, force, threads, *deps)
    log(f"ray: {len(refs)} tasks for {len(plan.cells())} cells ({len(plan)} plan nodes, "
        f"{len(plan) - len(refs)} cached)")
    ids = {ref: i for i, ref in refs.items()}
    pending = list(refs.values())
    cells = [c.id for c in plan.cells()]
    while pending:
        ready, pending = ray.wait(pending, num_returns=1)
        for ref in ready:
            node_id = ids[ref]
            try:
                got = ray.get(ref)
            except Exception as e:       # the task died more often than it is retried
                got = {"id": node_id, "status": "error", "message": f"{type(e).__name__}: {e}", "seconds": 0.0,
                       "where": {}}
            done[node_id] = got
            node = plan.nodes[node_id]
            detail = f": {got['message']}" if got.get("message") else ""
            host = got.get("where", {}).get("node_ip", "?")
            n = f" {cells.index(node_id) + 1}/{len(cells)}" if node_id in cells else ""
            log(f"[{plan.suite}{n}] {node_id}: {got['status']} ({got['seconds']:.1f} s on {host}){detail}")
    if not cells_only:
        return [CellOutcome(plan.nodes[i].ranker or "", plan.nodes[i].dataset or "", d["status"], d.get("message", ""),
                            d.get("seconds", 0.0)) for i, d in done.items()]
    return [CellOutcome(plan.nodes[c].ranker, plan.nodes[c].dataset, done[c]["status"], done[c].get("message", ""),
                        done[c].get("seconds", 0.0)) for c in cells]
