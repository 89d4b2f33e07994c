"""The few data types every part shares, and the TREC run format.

A Run maps query id -> doc id -> score (higher is better), like ir_measures and pytrec_eval.
Rankings derived from a run break score ties by doc id, so they are deterministic.
"""
from __future__ import annotations

import gzip
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Mapping

from .errors import DataError
from .files import atomic_write_bytes, read_lines

Run = dict[str, dict[str, float]]
Queries = dict[str, str]
Qrels = dict[str, dict[str, int]]


@dataclass(frozen=True)
class Doc:
    title: str
    text: str

    def joined(self) -> str:
        """BEIR's and Pyserini's 'flat' document: title + ' ' + text (no leading space)."""
        return f"{self.title} {self.text}".strip() if self.title else self.text


def ranked(scores: Mapping[str, float]) -> list[tuple[str, float]]:
    """Doc ids by descending score, ties by ascending doc id."""
    return sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))


def top_k(run: Mapping[str, Mapping[str, float]], k: int) -> Run:
    """A new run with at most k docs per query (the input is not modified)."""
    return {qid: dict(ranked(docs)[:k]) for qid, docs in run.items()}


def drop_self_hits(run: Mapping[str, Mapping[str, float]]) -> Run:
    """BEIR's convention: a hit whose doc id equals its query id is removed before scoring."""
    return {qid: {d: s for d, s in docs.items() if d != qid} for qid, docs in run.items()}


def bad_id(value: str) -> str | None:
    """Why an id cannot be written to and read back from a TREC file (whitespace-separated
    columns), or None when it can."""
    if value == "":
        return "is empty"
    if value.split() != [value]:
        return "contains whitespace (TREC run and qrels files separate columns by whitespace)"
    return None


def read_trec_run(path: Path, restrict_to: Iterable[str] | None = None) -> Run:
    """Read a TREC run (qid Q0 docid rank score tag), plain or gzipped.

    Errors name the file and line: wrong column count, a score that is not a finite number, a
    doc listed twice for one query, bytes that are not UTF-8, a damaged gzip stream.
    ``restrict_to`` keeps only those query ids.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: run file not found")
    return parse_trec_run(read_lines(path), path, restrict_to)


def parse_trec_run(lines: Iterable[tuple[int, str]], path, restrict_to: Iterable[str] | None = None) -> Run:
    """A TREC run from (line number, text) pairs, with ``read_trec_run``'s errors (``path``
    names where the lines came from): the file's lines, or a run's text before it is written
    (``trec_run_lines``), so that what was written is read back without reading the file."""
    keep = set(restrict_to) if restrict_to is not None else None
    run: Run = {}
    for n, line in lines:
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 6:
            raise DataError(f"{path}:{n}: a TREC run line has 6 columns "
                            f"(qid Q0 docid rank score tag), found {len(parts)}: {line.strip()[:80]!r}")
        qid, _, docid, rank, score, _tag = parts
        try:
            value = float(score)
            int(rank)
        except ValueError:
            raise DataError(f"{path}:{n}: rank must be an integer and score a number, "
                            f"found rank={rank!r} score={score!r}") from None
        if not math.isfinite(value):
            raise DataError(f"{path}:{n}: score is {score!r}; scores must be finite numbers")
        if keep is not None and qid not in keep:
            continue
        docs = run.setdefault(qid, {})
        if docid in docs:
            raise DataError(f"{path}:{n}: doc {docid!r} appears twice for query {qid!r}")
        docs[docid] = value
    return run


def format_trec_run(run: Mapping[str, Mapping[str, float]], tag: str) -> str:
    """TREC text, queries sorted by id, docs by rank; scores printed so they read back exactly."""
    out = io.StringIO()
    for qid in sorted(run):
        for rank, (docid, score) in enumerate(ranked(run[qid]), 1):
            out.write(f"{qid} Q0 {docid} {rank} {float(score)!r} {tag}\n")
    return out.getvalue()


def trec_run_lines(text: str) -> Iterator[tuple[int, str]]:
    """(line number, line) of a run's TREC text, split as ``read_lines`` splits a file's
    (universal newlines, kept as they are)."""
    return enumerate(io.StringIO(text, newline=""), 1)


def write_trec_run(run: Mapping[str, Mapping[str, float]], path: Path, tag: str) -> str:
    """Write atomically; gzip (deterministic: no timestamp) when the name ends in .gz. Level 1:
    a 300,000-line run in 0.1 s against 0.5 s at level 6, 7% larger. Returns the text written."""
    text = format_trec_run(run, tag)
    data = text.encode("utf-8")
    if str(path).endswith(".gz"):
        data = gzip.compress(data, compresslevel=1, mtime=0)
    atomic_write_bytes(Path(path), data)
    return text
