"""Install packages into this interpreter's environment: with uv where it can be had, else pip.

    python scripts/install.py [pip install arguments...]

The Makefile's set-up runs through this. uv installs the same packages at the same versions as
pip, in a fraction of the time (on this project's machines: rankbench[quick] in 20 s against
76 s, side by side from empty caches; ``README.md``). uv is fetched with pip (it is on PyPI).

uv reads its own settings, never pip's, so a machine whose packages come from folders and
mirrors named only in pip's configuration (``pip.conf``, ``PIP_*`` variables) would send uv to
PyPI alone. What pip is configured with is handed to uv as arguments: find-links, index-url,
extra-index-url, constraint, trusted-host, no-index, cert (as ``SSL_CERT_FILE``) and timeout;
and uv picks the best version across every index, as pip does (``unsafe-best-match``).

``RANKBENCH_INSTALLER=pip`` uses pip throughout (upgraded to 24 or later first); so does a
machine where uv cannot be installed, saying so. The venv may come without pip (``python -m venv
--without-pip``): the base interpreter's pip then fetches uv, and uv puts pip in the venv. Standard
library only: it runs before anything is installed.
"""
from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

# pip option -> uv argument (each value of a list-valued option is passed once)
_LISTS = {"find-links": "--find-links", "extra-index-url": "--extra-index-url", "constraint": "--constraint",
          "trusted-host": "--allow-insecure-host"}
# later sections win, as in pip: [global] < [install] < PIP_* environment variables
_SECTIONS = ("global", "install", ":env:")


def _has_pip(python: str) -> bool:
    return subprocess.run([python, "-m", "pip", "--version"], capture_output=True).returncode == 0


def pip_command() -> list[str]:
    """A pip that installs into this environment: its own; else its base interpreter's, aimed
    here with pip's ``--python`` (the Makefile makes the venv without pip: 0.1 s against 3 s);
    else one that ensurepip puts here."""
    if _has_pip(sys.executable):
        return [sys.executable, "-m", "pip"]
    base = getattr(sys, "_base_executable", "") or ""
    if sys.prefix != sys.base_prefix and base and _has_pip(base):     # a venv: its base interpreter
        return [base, "-m", "pip", "--python", sys.executable]
    subprocess.run([sys.executable, "-m", "ensurepip"], check=True, stdout=subprocess.DEVNULL)
    return [sys.executable, "-m", "pip"]


def pip_config(pip: list[str]) -> dict[str, str]:
    """pip's configuration as pip merges it: option -> raw value."""
    out = subprocess.run([pip[0], "-m", "pip", "config", "list"], capture_output=True, text=True)
    if out.returncode:
        return {}
    found: dict[str, dict[str, str]] = {}
    for line in out.stdout.splitlines():
        key, sep, value = line.partition("=")
        section, dot, option = key.rpartition(".")
        if not sep or not dot or section not in _SECTIONS:
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        found.setdefault(option, {})[section] = value
    return {opt: by[max(by, key=_SECTIONS.index)] for opt, by in found.items()}


def uv_arguments(config: dict[str, str]) -> tuple[list[str], dict[str, str]]:
    """uv pip install's arguments and environment for pip's configuration."""
    args = ["--index-strategy", "unsafe-best-match"]
    env: dict[str, str] = {}
    for option, flag in _LISTS.items():
        for value in config.get(option, "").split():
            args += [flag, value]
    if config.get("index-url"):
        args += ["--index-url", config["index-url"]]
    if config.get("no-index", "").lower() in ("1", "true", "yes", "on"):
        args.append("--no-index")
    if config.get("cert") and not os.environ.get("SSL_CERT_FILE"):
        env["SSL_CERT_FILE"] = config["cert"]
    if config.get("timeout") or config.get("default-timeout"):
        env.setdefault("UV_HTTP_TIMEOUT", config.get("timeout") or config["default-timeout"])
    return args, env


def _uv(pip: list[str]) -> str | None:
    here = Path(sys.executable).parent
    found = shutil.which("uv", path=str(here))
    if found:
        return found
    done = subprocess.run([*pip, "install", "-q", "uv"])
    found = shutil.which("uv", path=str(here))
    if done.returncode or not found:
        print("scripts/install.py: uv could not be installed; installing with pip instead", file=sys.stderr)
        return None
    return found


def _pip(pip: list[str], packages: list[str]) -> int:
    upgrade = subprocess.run([*pip, "install", "-q", "--upgrade", "pip>=24"])
    if upgrade.returncode:
        return upgrade.returncode
    return subprocess.run([sys.executable, "-m", "pip", "install", "-q", *packages]).returncode


def main(packages: list[str]) -> int:
    if not packages:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    pip = pip_command()
    uv = None if os.environ.get("RANKBENCH_INSTALLER", "uv") == "pip" else _uv(pip)
    if uv is None:
        return _pip(pip, packages)
    args, env = uv_arguments(pip_config(pip))
    if pip[0] != sys.executable:     # the base interpreter's pip: put one in the venv for later (README)
        packages = ["pip", *packages]
    cmd = [uv, "pip", "install", "-q", "--python", sys.executable, *args, *packages]
    if os.environ.get("RANKBENCH_INSTALL_VERBOSE"):
        print("+ " + shlex.join(cmd), file=sys.stderr)
    return subprocess.run(cmd, env={**os.environ, **env}).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
