"""Is the model hub reachable? Decided once per process, quickly, so nothing hangs offline.

``RANKBENCH_OFFLINE=1`` (or ``0``) decides outright; ``HF_HUB_OFFLINE=1`` means offline; otherwise
a TCP connection to huggingface.co:443 is tried with a 2-second timeout (skipped behind an HTTPS
proxy, where the hub library must decide). When offline, ``HF_HUB_OFFLINE=1`` is set so that
huggingface_hub, transformers and sentence-transformers never try the network (a hub id tried
without it takes 75 s to fail on these machines).
"""
from __future__ import annotations

import os
import socket
import sys

_STATE: dict[str, bool] = {}
_TRUE = {"1", "true", "yes", "on"}


def _probe(host: str = "huggingface.co", port: int = 443, timeout: float = 2.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def is_offline() -> bool:
    if "offline" not in _STATE:
        explicit = os.environ.get("RANKBENCH_OFFLINE")
        if explicit is not None and explicit.strip() != "":
            offline = explicit.strip().lower() in _TRUE
        elif os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE:
            offline = True
        elif os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy"):
            offline = False
        else:
            offline = not _probe()
        _STATE["offline"] = offline
        if offline:
            set_offline_env()
    return _STATE["offline"]


def set_offline_env() -> None:
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    if "huggingface_hub" in sys.modules:      # it reads the variable once, at import
        import huggingface_hub.constants as c

        c.HF_HUB_OFFLINE = True


def reachable(url: str, timeout: float = 2.0) -> bool:
    """Can a TCP connection be opened to ``url``'s host and port, within ``timeout`` seconds?"""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if not parts.hostname:
        return False
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return _probe(parts.hostname, port, timeout)
