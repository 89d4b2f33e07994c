"""A cell's efficiency measured in a fresh process of its own.

In one long process, a JVM or a model that an earlier cell loaded stays resident, so a cell's
peak memory would include its predecessors'. ``rankbench run`` therefore makes each run in two
steps: the suite's process builds what the cell needs into the cache (index, encoded corpus,
export, trained model: ``Pipeline.prepare``), then a fresh Python process (``python -m
harness.isolation``) starts the ranker's runtime, loads those artefacts, ranks every query, times
the latency queries, and exits. Its peak resident memory (the kernel's VmHWM of that process) is
the cell's own: interpreter, runtime, model, index and ranking, never another cell's.

The child reports, beside the run, what its start cost, none of it inside ranking time:
``start_s`` (the interpreter and the harness, from spawn to ready), ``runtime_start_s`` (the JVM,
torch or onnxruntime, started once, ``Ranker.start_runtime``) and ``prepare_s`` (opening the
index, loading the model). See docs/MEASUREMENT.md.
"""
from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from . import errors
from .errors import RankbenchError


def available(runner) -> str | None:
    """Why this runner's cells cannot run in fresh processes (None when they can): a child reads
    the config from its file, so rankers handed over as Python classes stay in this process."""
    cfg = runner.config
    if not Path(cfg.path).is_file():
        return "the config is not a file"
    if any(spec.cls is not None for spec in cfg.rankers.values()):
        return "a ranker class was handed over in Python"
    return None


def built(runner, ranker: str, dataset, k: int, settings) -> bool:
    """Every model, export, index and encoded corpus the run needs is in the cache (what
    ``rankbench plan`` shows as cached); runs are not looked at."""
    from .plan import Planner

    planner = Planner(runner)
    todo, seen = list(planner.needs(ranker, dataset.name, k, settings)), set()
    while todo:
        node = planner.nodes[todo.pop()]
        if node.id in seen or node.step == "run":
            continue
        seen.add(node.id)
        if not node.cached:
            return False
        todo += node.deps
    return True


def measure_in_child(runner, ranker: str, dataset, k: int, settings, candidates=None) -> tuple[dict, dict]:
    """``Runner(isolate=measure_in_child)``: the run of ``ranker`` on ``dataset`` made and
    measured in a fresh process. Before it starts, this process makes the runs it reads (a
    fusion's members', each in its own process; its first stage's is made already) and builds
    what it loads. A child's error is raised here as the same error, with its message."""
    why_not = available(runner)
    if why_not is not None:
        run, measured = runner.measure(ranker, dataset, k, settings, candidates=candidates)
        measured["process"].update(own=False, why_not=why_not)
        return run, measured
    spec = runner.config.ranker(ranker)
    cls = spec.ranker_class()
    if cls.runs_references and spec.first_stage is None:
        for member in cls.references(spec.params, ranker):
            runner.get_run(member, dataset, k, settings)
    from . import timing

    with timing.phase("plan checks (what is built)"):
        ready = built(runner, ranker, dataset, k, settings)
    if not ready:
        t0 = time.perf_counter()
        runner.pipeline(ranker).prepare(dataset)    # built (and cached) here: the child only loads it
        timing.ranker("build (index, encoding, export, training)", time.perf_counter() - t0)
    job = {"config": str(Path(runner.config.path).resolve()), "reports": str(runner.reports),
           "cache": str(runner.cache.home), "threads": runner.ctx.threads, "ranker": ranker,
           "dataset": dataset.name, "k": k, "settings": asdict(settings)}
    with tempfile.TemporaryDirectory(prefix="rankbench-cell-") as tmp:
        (Path(tmp) / "job.json").write_text(json.dumps(job))
        with open(Path(tmp) / "config.pkl", "wb") as f:     # parsed and checked once, here
            pickle.dump(runner.config, f, protocol=pickle.HIGHEST_PROTOCOL)
        if candidates is not None:       # handed over as they are: parsing the cached TREC file again costs more
            with open(Path(tmp) / "candidates.pkl", "wb") as f:
                pickle.dump(candidates, f, protocol=pickle.HIGHEST_PROTOCOL)
        # the child imports what this process can (a kind named "module:Class" found on sys.path)
        path = os.pathsep.join(p for p in sys.path if p)
        # the child's stderr comes back as log lines: no progress bars in it (transformers draws one
        # per model load)
        env = {"HF_HUB_DISABLE_PROGRESS_BARS": "1", **os.environ, "PYTHONPATH": path,
               "RANKBENCH_SPAWNED_AT": repr(time.monotonic())}
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "harness.isolation", tmp], env=env,
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
        child_s = time.perf_counter() - t0
        for line in (proc.stdout + proc.stderr).splitlines():
            if line.strip():
                runner.log(f"  [{ranker} on {dataset.name}, own process] {line}")
        out, err = Path(tmp) / "measured.pkl", Path(tmp) / "error.json"
        if err.exists():
            e = json.loads(err.read_text())
            cls = getattr(errors, e["type"], RankbenchError)
            raise (cls if isinstance(cls, type) and issubclass(cls, RankbenchError) else RankbenchError)(e["message"])
        if proc.returncode != 0 or not out.exists():
            raise RankbenchError(f"ranker {ranker} on {dataset.name}: its own process exited with status "
                                 f"{proc.returncode} and no run")
        with open(out, "rb") as f:
            run, measured = pickle.load(f)
    from .pipeline import check_run

    with timing.phase("runs checked"):
        check_run(run, dataset.queries(), candidates, k, f"ranker {ranker} ({spec.kind})", dataset.doc_ids())
    # the child's own time that was not its ranker's: the interpreter's start, then reading the
    # config, the dataset and the candidates, and handing the run back
    start = measured["process"]["start_s"]
    ranked = (measured["process"]["runtime_start_s"] + measured["prepare_s"] + measured["rank_wall_s"]
              + measured["latency_s"])
    setup = measured.pop("setup", {})
    timing.harness("run processes: interpreter start", start)
    for name, seconds in setup.items():
        timing.harness(f"run processes: {name}", seconds)
    timing.harness("run processes: checks, sizes, hand-back", child_s - start - ranked - sum(setup.values()))
    return run, measured


# the runtimes whose memory a cell's peak can hold: which of them its process imported
RUNTIMES = ("jnius", "torch", "onnxruntime", "transformers", "sentence_transformers", "faiss")


def loaded() -> list[str]:
    """The heavy runtimes this process has imported, in RUNTIMES' order: an ONNX cell's peak
    memory holds onnxruntime and transformers' tokenizer, never torch (tests/test_onnx_backend.py)."""
    return [m for m in RUNTIMES if m in sys.modules]


# imported with the harness, before anything is timed: the suite's own process always has them, and
# a ranker that imports one lazily in its first ``rank`` would otherwise book the import as ranking
# (numpy: 0.4 s here, which put the random reranker of DL 2019's 43 queries at 119 queries/s
# instead of about 2,200)
PRELOAD = ("numpy",)


def preload() -> None:
    import importlib

    for name in PRELOAD:
        importlib.import_module(name)


def _child(folder: Path) -> None:
    ready = time.monotonic()
    from .memory import _field

    baseline = _field("VmRSS") or 0
    setup: dict[str, float] = {}
    t0 = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal t0
        now = time.perf_counter()
        setup[name] = now - t0
        t0 = now

    spec = json.loads((folder / "job.json").read_text())
    from .cache import Cache
    from .config import Settings
    from .runner import Runner

    preload()
    lap("imports")
    with open(folder / "config.pkl", "rb") as f:
        config = pickle.load(f)
    settings = Settings(**spec["settings"])
    runner = Runner(config, Path(spec["reports"]), cache=Cache(Path(spec["cache"])), progress=False,
                    threads=spec["threads"], log=lambda m: print(m, file=sys.stderr, flush=True))
    lap("config")
    dataset = runner.dataset(spec["dataset"])
    dataset.queries()
    lap("dataset")
    spawned = float(os.environ.get("RANKBENCH_SPAWNED_AT", ready))
    candidates = None
    if (folder / "candidates.pkl").exists():
        with open(folder / "candidates.pkl", "rb") as f:
            candidates = pickle.load(f)
    lap("candidates")
    # the run is checked against the dataset by the suite's process, which has read its doc ids
    run, measured = runner.measure(spec["ranker"], dataset, spec["k"], settings, whole_process=True,
                                   candidates=candidates, check=False)
    measured["process"] = {"own": True, "start_s": round(ready - spawned, 3),
                           "baseline_rss_mib": round(baseline / 2**20, 1), **measured.get("process", {}),
                           "loaded": loaded()}
    peak = measured["memory"]["peak_rss_mib"]
    measured["memory"]["rss_increase_mib"] = round(max(peak - baseline / 2**20, 0), 1)
    measured["setup"] = setup
    tmp = folder / "measured.pkl.tmp"
    with open(tmp, "wb") as f:
        pickle.dump((run, measured), f, protocol=pickle.HIGHEST_PROTOCOL)
    tmp.replace(folder / "measured.pkl")


def main(argv: list[str]) -> int:
    folder = Path(argv[0])
    try:
        _child(folder)
    except RankbenchError as e:
        (folder / "error.json").write_text(json.dumps({"type": type(e).__name__, "message": str(e)}))
        return 1
    except Exception as e:       # a bug: its traceback goes to the parent
        import traceback

        (folder / "error.json").write_text(json.dumps({"type": "RankbenchError", "message":
                                                       f"{type(e).__name__}: {e}\n{traceback.format_exc()}"}))
        return 1
    return 0


if __name__ == "__main__":
    status = main(sys.argv[1:])
    # everything is written and closed: leave without the interpreter's teardown, which for a
    # process that loaded torch, onnxruntime and transformers takes 0.6 s on 2 cores (module
    # finalizers, thread pools) and measures nothing
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
