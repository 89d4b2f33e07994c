"""``rankbench serve``: build the service (models loaded, corpus indexed), then open the port."""
from __future__ import annotations

import os
import sys
from pathlib import Path

from harness.data import read_corpus


def serve(args) -> int:
    import uvicorn

    from harness.cli_inspect import load

    from .app import create_app
    from .service import RankService, ServeSettings

    config, reports = load(args)
    corpus = read_corpus(Path(args.corpus)) if args.corpus else None
    fields = {k: getattr(args, k) for k in ("max_documents", "batch_documents", "max_batch_tokens", "max_wait_ms",
                                            "max_queue", "timeout_s", "cache_entries", "score_mode", "threshold",
                                            "encode_batch_size", "calibrator", "calibrate_on", "calibration_queries")
              if getattr(args, k, None) is not None}
    settings = ServeSettings(**fields)
    log = lambda msg: print(msg, file=sys.stderr, flush=True)    # noqa: E731
    log(f"rankbench serve {args.ranker}: loading models" + (f", preparing {args.dataset or args.corpus}"
                                                            if args.dataset or args.corpus else ""))
    service = RankService(config, args.ranker, dataset=args.dataset, corpus=corpus, reports=reports,
                          settings=settings, log=log)
    api_key = args.api_key or os.environ.get("RANKBENCH_API_KEY") or None
    app = create_app(service, api_key=api_key, cors_origins=args.cors or None)
    log(f"ready: http://{args.host}:{args.port} (fingerprint {service.fingerprint[:16]}"
        + (", API key required" if api_key else "") + "); /docs for the API")
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, timeout_graceful_shutdown=30)
    return 0
