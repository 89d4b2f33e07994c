"""Running a suite past one machine, on Ray: ``rankbench run SUITE --executor ray``.

The plan (``harness.plan``) becomes Ray tasks, each after the tasks it needs; the cache home is a
filesystem every node sees, and its per-entry lock makes sure no artefact is built twice. Ray is
an extra (``pip install 'rankbench[ray]'``); the local executor needs none of this.
"""
