"""rankbench serve: the benchmarked ranker behind an HTTP API (FastAPI, uvicorn).

The server ranks with the same bench.toml entry, the same Pipeline and the same fingerprint as
the reports that measured it. ``serving.service`` holds the ranking (no HTTP), ``serving.batcher``
the queue that batches concurrent requests, ``serving.app`` the HTTP surface.
"""
