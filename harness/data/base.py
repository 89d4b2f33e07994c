"""What the harness needs from a dataset, whatever its source, and how bench.toml names one."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

from ..conventions import Conventions
from ..errors import DataError, unknown
from ..types import Doc, Qrels, Queries, Run


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset as bench.toml names it."""

    name: str
    source: str                      # "local:PATH" or "irds:ID"
    split: str = "test"              # local: which qrels/<split>.tsv
    conventions: str | None = None   # overrides the dataset's own
    seed_from: str | None = None     # irds: a local folder that may seed ir_datasets' cache offline
    description: str | None = None

    @property
    def scheme(self) -> str:
        return self.source.split(":", 1)[0]

    @property
    def location(self) -> str:
        return self.source.split(":", 1)[1] if ":" in self.source else ""


def _digest(*parts: str) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode("utf-8") + b"\0")
    return h.hexdigest()


class Dataset:
    """What the harness needs from a dataset. Subclasses load lazily and cache in memory."""

    name: str
    source: str
    split: str
    conventions: Conventions
    rerank_only: bool = False
    title: str = ""
    description: str = ""

    def queries(self) -> Queries:
        raise NotImplementedError

    def qrels(self) -> Qrels:
        raise NotImplementedError

    def corpus(self) -> Mapping[str, Doc]:
        raise NotImplementedError

    def docs(self, ids: Iterable[str]) -> dict[str, Doc]:
        """Look up documents by id; a missing id is an error naming it."""
        corpus = self.corpus()
        out = {}
        for i in ids:
            if i not in corpus:
                raise DataError(f"{self.where}: doc {i!r} is not in the corpus")
            out[i] = corpus[i]
        return out

    def run_names(self) -> list[str]:
        return []

    def load_run(self, name: str) -> Run:
        raise DataError(unknown("first-stage run", name, self.run_names(), self.where))

    def run_fingerprint(self, name: str) -> str:
        raise DataError(unknown("first-stage run", name, self.run_names(), self.where))

    def fingerprint(self) -> str:
        """Changes when anything that affects evaluation changes: data, split, conventions."""
        raise NotImplementedError

    def corpus_fingerprint(self) -> str:
        """Changes only when the documents change: indexes and encoded corpora key on it."""
        raise NotImplementedError

    @property
    def where(self) -> str:
        return f"dataset {self.name} ({self.source})"

    def stats(self) -> dict:
        return {"queries": len(self.queries()), "judgments": sum(len(v) for v in self.qrels().values())}

    def doc_ids(self) -> "Mapping[str, object] | None":
        """The corpus's ids when they are at hand (a local corpus, an ir_datasets corpus already
        loaded), else None: what the runner checks every returned document against."""
        return None

    def judged_outside_corpus(self) -> dict | None:
        """Judgments of documents that are not in the corpus: counts and an example, None when
        there are none or the corpus is not at hand. On a reranking set (rerank_only) this is
        by construction (its corpus is the candidates' passages) and is not a warning."""
        ids = self.doc_ids()
        if ids is None:
            return None
        missing = [(q, d, g) for q, docs in self.qrels().items() for d, g in docs.items() if d not in ids]
        if not missing:
            return None
        return {"judgments": len(missing), "relevant": sum(1 for *_, g in missing if g > 0),
                "queries": len({q for q, *_ in missing}), "of_judgments": sum(len(v) for v in self.qrels().values()),
                "example": {"query": missing[0][0], "doc": missing[0][1]}}

    def warnings(self) -> list[str]:
        """What a result on this dataset must say about its data (the report shows it)."""
        out = self.__dict__.get("_warnings")
        if out is None:
            out = []
            gap = None if self.rerank_only else self.judged_outside_corpus()
            if gap:
                out.append(f"the qrels judge {gap['judgments']} documents that are not in the corpus "
                           f"({gap['relevant']} of them relevant, in {gap['queries']} queries; "
                           f"{gap['of_judgments']} judgments in all; e.g. query {gap['example']['query']!r}, "
                           f"doc {gap['example']['doc']!r}): no ranker can retrieve them, so every "
                           f"measure's ceiling is below 1")
            self.__dict__["_warnings"] = out
        return out

    def validate(self) -> None:
        """Parse everything the dataset holds (without running anything)."""
        self.queries()
        self.qrels()


def check_run_file(run: Run, path: Path, dataset: "Dataset") -> Run:
    """A run file's queries cut to the dataset's; an empty file, or one that ranks none of the
    dataset's queries, is an error naming the file (not a silent row of zeros)."""
    if not run:
        raise DataError(f"{path}: the run file has no lines: a TREC run has one line per ranked "
                        f"document (qid Q0 docid rank score tag)")
    queries = dataset.queries()
    kept = {q: docs for q, docs in run.items() if q in queries}
    if not kept:
        raise DataError(f"{path}: none of its {len(run)} queries (e.g. {next(iter(run))!r}) is a query "
                        f"of {dataset.where} (e.g. {next(iter(queries))!r}): is it a run of another dataset?")
    ids = dataset.doc_ids()
    for qid, docs in kept.items() if ids is not None else ():
        for d in docs:
            if d not in ids:
                raise DataError(f"{path}: query {qid!r} ranks doc {d!r}, which is not in the corpus of "
                                f"{dataset.where}")
    return kept
