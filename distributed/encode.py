"""A corpus encoded, and candidate lists scored, on Ray Data: ``map_batches`` over an actor
pool, one model per actor.

The encoder's own batches (``encode_batches``: the length-sorted batches its ``_encode`` cuts)
are the rows, one row per batch, so every actor encodes exactly the batches one process would:
the embeddings are the same bits, in any number of actors, and they are written as the same
cache entry (area ``bi-encoder-corpus``, the ranker's ``corpus_key``) that the ranker's
``prepare`` reads. A local run finds the entry and encodes nothing. A cross-encoder's candidate
lists go the same way (``score_on_ray``): its own length-sorted pair batches are the rows, and
the run is the one its ``rank`` gives in one process.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable

from harness.errors import ConfigError

from .common import RESOURCE, SHARE, require_ray, task_env


def _model_of(inst, method: str, does: str, only: str):
    """The object that does the work for a ranker: the ranker itself, or an ONNX export's inner one."""
    model = getattr(inst, "inner", inst)
    if not hasattr(model, method):
        raise ConfigError(f"ranker {inst.name} ({inst.kind}) does not {does}: only {only} (and their ONNX "
                          f"exports) do")
    return model


def encoder_of(inst):
    """The object that encodes for a ranker: a bi-encoder itself, an ONNX bi-encoder's inner one."""
    return _model_of(inst, "encode_batches", "encode a corpus", "bi-encoders")


def scorer_of(inst):
    """The object that scores pairs for a ranker: a cross-encoder, an ONNX cross-encoder's inner one."""
    return _model_of(inst, "score_batches", "score (query, passage) pairs", "cross-encoders")


class _Worker:
    """A Ray Data actor: one Runner, one model, many batches. A row is one of the model's own
    batches: texts to encode (``x``), or the queries (``x``) and passages (``y``) of pairs to
    score; it gives back the float32 bytes of their embeddings or scores."""

    def __init__(self, config_path: str, reports: str, ranker: str, threads: int, scoring: bool):
        from rankers.pairs import TruncationStats

        from .common import _runner

        runner = _runner(config_path, reports, False, threads)
        runner.rankers.resolve(ranker)
        inst = runner.instance(ranker)
        self.scoring = scoring
        self.model = scorer_of(inst) if scoring else encoder_of(inst)
        if scoring:
            self.model._stats = TruncationStats()

    def __call__(self, batch: dict) -> dict:
        import numpy as np

        out = []
        for xs, ys in zip(batch["x"], batch["y"]):
            if self.scoring:
                got = self.model.score([(str(q), str(d)) for q, d in zip(xs, ys)])
            else:
                got = self.model._encode([str(t) for t in xs], progress=False)
            out.append(np.ascontiguousarray(got, dtype=np.float32).tobytes())
        return {"b": batch["b"], "out": np.array(out, dtype=object)}


def _on_actors(rows: list[dict], actors: int, ranker: str, scoring: bool, config_path: str, reports: str,
               threads: int, env: dict[str, str]) -> list[bytes]:
    """The rows through ``actors`` Ray Data actors; each row's output, in row order."""
    import ray.data
    from ray.data import ActorPoolStrategy

    if not rows:
        raise ConfigError("nothing to do on Ray: no batches")
    if actors < 1:
        raise ConfigError(f"Ray Data takes at least one actor, not {actors}")
    ray.data.DataContext.get_current().enable_progress_bars = False
    out = ray.data.from_items(rows, override_num_blocks=max(1, min(len(rows), actors * 4))).map_batches(
        _Worker, batch_size=1, batch_format="numpy",
        fn_constructor_kwargs={"config_path": config_path, "reports": reports, "ranker": ranker,
                               "threads": threads, "scoring": scoring},
        compute=ActorPoolStrategy(size=actors), num_cpus=SHARE, resources={RESOURCE: SHARE},
        runtime_env={"env_vars": env})
    got = {int(r["b"]): r["out"] for r in out.iter_rows()}
    if sorted(got) != list(range(len(rows))):
        raise ConfigError(f"Ray Data returned {len(got)} of {len(rows)} batches")
    return [got[b] for b in range(len(rows))]


def encode_on_ray(runner, ranker: str, ds_name: str, actors: int, config_path: str, reports: str,
                  threads: int = 0, log: Callable[[str], None] | None = None) -> dict:
    """Encode the dataset's corpus with the ranker's model on ``actors`` Ray Data actors, into the
    cache entry the ranker reads; returns what it did (passages, seconds, throughput). An entry
    already in the cache is not encoded again."""
    import numpy as np

    require_ray()
    log = log or (lambda m: None)
    if actors < 1:
        raise ConfigError(f"Ray Data takes at least one actor, not {actors}")
    runner.rankers.resolve(ranker)
    dataset = runner.dataset(ds_name)
    enc = encoder_of(runner.instance(ranker))
    key = enc.corpus_key(dataset)
    threads = threads or max(1, (os.cpu_count() or 1) // actors)
    stats: dict = {"ranker": ranker, "dataset": ds_name, "actors": actors, "threads_per_actor": threads}

    def build(folder: Path) -> None:
        t0 = time.perf_counter()
        ids, texts = enc.corpus_texts(dataset)
        batches = enc.encode_batches(texts)
        emb = encode_texts(texts, batches, actors, ranker, config_path, reports, threads, task_env(runner.cache.home))
        np.save(folder / "embeddings.npy", emb)
        (folder / "doc_ids.txt").write_text("\n".join(ids) + "\n", encoding="utf-8")
        seconds = time.perf_counter() - t0
        stats.update(cached=False, passages=len(ids), batches=len(batches), seconds=round(seconds, 3),
                     passages_per_s=round(len(ids) / seconds, 2) if seconds > 0 else None)
        log(f"ray data: {ds_name}'s corpus ({len(ids)} passages) encoded by {ranker} on {actors} actors "
            f"in {seconds:.1f} s ({stats['passages_per_s']} passages/s)")

    describe = {"what": "encoded corpus", "model": getattr(enc.params, "model", ranker), "dataset": dataset.name,
                "encoded_on": f"Ray Data, {actors} actors"}
    runner.cache.artifact("bi-encoder-corpus", key, describe, build)
    stats.setdefault("cached", True)
    return stats


def encode_texts(texts: list[str], batches: list[list[int]], actors: int, ranker: str, config_path: str,
                 reports: str, threads: int, env: dict[str, str]):
    """Texts encoded on Ray Data by the ranker's model: one row per batch (positions into texts),
    ``actors`` actors; the embeddings in the texts' order."""
    import numpy as np

    rows = [{"b": b, "x": [texts[i] for i in idx], "y": []} for b, idx in enumerate(batches)]
    got = _on_actors(rows, actors, ranker, False, config_path, reports, threads, env)
    dim = np.frombuffer(got[0], dtype=np.float32).size // len(batches[0])
    emb = np.zeros((len(texts), dim), dtype=np.float32)
    for idx, raw in zip(batches, got):
        emb[idx] = np.frombuffer(raw, dtype=np.float32).reshape(len(idx), dim)
    return emb


def score_on_ray(runner, ranker: str, ds_name: str, queries: dict[str, str], candidates: dict[str, dict],
                 k: int, actors: int, config_path: str, reports: str, threads: int = 0):
    """A cross-encoder's run over candidate lists, scored on ``actors`` Ray Data actors: the run
    its ``rank`` gives in one process (the same batches, so the same scores)."""
    import numpy as np

    from harness.types import ranked

    require_ray()
    runner.rankers.resolve(ranker)
    dataset = runner.dataset(ds_name)
    scorer = scorer_of(runner.instance(ranker))
    order = [(q, d) for q in queries for d in candidates.get(q, {})]
    if not order:
        return {q: {} for q in queries}
    docs = dataset.docs({d for _, d in order})
    pairs = [(queries[q], docs[d].joined()) for q, d in order]
    batches = scorer.score_batches(pairs)
    rows = [{"b": b, "x": [pairs[i][0] for i in idx], "y": [pairs[i][1] for i in idx]}
            for b, idx in enumerate(batches)]
    threads = threads or max(1, (os.cpu_count() or 1) // max(actors, 1))
    got = _on_actors(rows, actors, ranker, True, config_path, reports, threads, task_env(runner.cache.home))
    scores = np.zeros(len(pairs), dtype=np.float32)
    for idx, raw in zip(batches, got):
        scores[idx] = np.frombuffer(raw, dtype=np.float32)
    run: dict[str, dict[str, float]] = {q: {} for q in queries}
    for (q, d), sc in zip(order, scores):
        run[q][d] = float(sc)
    return {q: dict(ranked(v)[:k]) for q, v in run.items()}
