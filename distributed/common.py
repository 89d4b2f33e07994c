"""What the Ray driver and its workers share: the resource that keeps timed work alone on a
node, the environment a task gets, and the one Runner a worker process keeps."""
from __future__ import annotations

import os
import socket
from pathlib import Path

from harness.errors import ConfigError
from harness.runner import Runner

RESOURCE = "rankbench_node"   # one per node: a timed task takes all of it, any other SHARE of it
SHARE = 0.01
RETRIES = 3                   # a task whose worker died is run again up to this many times
# what a task's process needs of the driver's environment (cache home, offline switches, fault injection)
ENV_PREFIXES = ("RANKBENCH_", "HF_", "TRANSFORMERS_", "IR_DATASETS_", "ORT_", "OMP_", "TOKENIZERS_")
ENV_NAMES = ("OPENAI_API_KEY", "JAVA_HOME", "XDG_CACHE_HOME")


def require_ray():
    keep_jvm_signals()       # read when ray is imported: before it
    try:
        import ray
    except ImportError as e:
        raise ConfigError(f"--executor ray needs Ray ({e}); install it with: pip install 'rankbench[ray]'") from None
    return ray


# Ray's C++ core installs a SIGSEGV handler of its own in every process it joins (the driver too);
# the JVM raises SIGSEGV on purpose (null checks, safepoints) and expects its own handler to see
# it, so pyserini in a process Ray has joined dies at its first search. Ray's switch turns it off.
NO_SIGNAL_HANDLER = {"RAY_DISABLE_FAILURE_SIGNAL_HANDLER": "1"}


def keep_jvm_signals() -> None:
    """Before Ray is imported in a process that may start the JVM (the driver, a test session):
    Ray reads the switch at import."""
    os.environ.update(NO_SIGNAL_HANDLER)


def task_env(cache_home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k.startswith(ENV_PREFIXES) or k in ENV_NAMES}
    env["RANKBENCH_HOME"] = str(Path(cache_home).resolve())
    env.update(NO_SIGNAL_HANDLER)      # a worker may rank with pyserini
    return env


def where() -> dict:
    """The node a task ran on, for its record."""
    out = {"host": socket.gethostname(), "pid": os.getpid()}
    try:
        import ray

        ctx = ray.get_runtime_context()
        out.update(node_id=ctx.get_node_id(), node_ip=ray.util.get_node_ip_address())
    except Exception:      # outside a Ray worker
        pass
    return out


# -- the worker side -------------------------------------------------------------------------------

_RUNNERS: dict[tuple, Runner] = {}


def _runner(config_path: str, reports: str, force: bool, threads: int) -> Runner:
    """One Runner per worker process and config: models loaded by one task serve the next."""
    from harness.config import load_config

    key = (config_path, reports, force, threads)
    if key not in _RUNNERS:
        config = load_config(config_path)
        _RUNNERS[key] = Runner(config, Path(reports), progress=False, force=force, threads=threads,
                               executor=lambda: {"kind": "ray", **where()})
    return _RUNNERS[key]
