"""A corpus of your own documents, in memory: what a pipeline searches when there is no dataset
(a notebook's documents, a RAG application's passages). No queries, no judgments: it can be
searched, not evaluated. Indexes and encodings built on it are cached by its content."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Mapping

from ..conventions import CONVENTIONS
from ..errors import DataError
from ..types import Doc, bad_id
from .base import Dataset, _digest


class Corpus(Dataset):
    """``Corpus({"d1": "text", "d2": {"title": "...", "text": "..."}})``, or an iterable of
    BEIR-style records (``{"_id": ..., "title": ..., "text": ...}``)."""

    rerank_only = False

    def __init__(self, documents: "Mapping[str, str | Mapping | Doc] | Iterable[Mapping]", name: str = "corpus"):
        self.name = name
        self.source = "memory"
        self.split = "none"
        self.title = name
        self.conventions = CONVENTIONS["generic"]
        items = documents.items() if isinstance(documents, Mapping) else (
            (_record_id(r, i), r) for i, r in enumerate(documents, 1))
        self._docs: dict[str, Doc] = {}
        for i, (doc_id, value) in enumerate(items, 1):
            where = f"corpus {name}: document {i}"
            if not isinstance(doc_id, str) or bad_id(doc_id):
                raise DataError(f"{where}: id {doc_id!r} " + (bad_id(doc_id) if isinstance(doc_id, str) else "is not a string"))
            if doc_id in self._docs:
                raise DataError(f"{where}: id {doc_id!r} appears twice")
            self._docs[doc_id] = _doc(value, f"{where} ({doc_id!r})")
        if not self._docs:
            raise DataError(f"corpus {name}: no documents")

    def queries(self):
        return {}

    def qrels(self):
        return {}

    def corpus(self):
        return self._docs

    def doc_ids(self):
        return self._docs

    @property
    def where(self) -> str:
        return f"corpus {self.name} (in memory, {len(self._docs)} documents)"

    def corpus_fingerprint(self) -> str:
        if "_fp" not in self.__dict__:
            self._fp = _digest("memory-corpus", json.dumps([[k, d.title, d.text] for k, d in sorted(self._docs.items())]))
        return self._fp

    def fingerprint(self) -> str:
        return _digest("memory", self.corpus_fingerprint())

    def stats(self) -> dict:
        return {"queries": 0, "judgments": 0, "docs": len(self._docs)}



class RequestCorpus(Corpus):
    """The documents of the texts being reranked now (a server's batch, an adapter's call),
    replaced for every call: a reranker prepared on it once reads each call's documents."""

    def __init__(self, name: str = "request"):
        super().__init__({"-": ""}, name=name)

    def fill(self, docs: "Mapping[str, Doc]") -> None:
        self._docs = dict(docs)
        self.__dict__.pop("_fp", None)


def _record_id(record, i: int):
    if not isinstance(record, Mapping):
        raise DataError(f"corpus: document {i} is a {type(record).__name__}; give {{\"_id\": ..., \"text\": ...}} "
                        f"records or a mapping of id -> text")
    doc_id = record.get("_id", record.get("id"))
    if doc_id is None:
        raise DataError(f"corpus: document {i} has no \"_id\" (or \"id\")")
    return doc_id


def _doc(value, where: str) -> Doc:
    if isinstance(value, Doc):
        return value
    if isinstance(value, str):
        return Doc("", value)
    if isinstance(value, Mapping):
        title, text = value.get("title", "") or "", value.get("text")
        if isinstance(text, str) and isinstance(title, str):
            return Doc(title, text)
    raise DataError(f"{where}: a document is a text, or a record with a \"text\" string (and an optional "
                    f"\"title\"), found {value!r:.80}")


def read_corpus(path: Path) -> Corpus:
    """A BEIR corpus.jsonl (plain or .gz), or a folder holding one, as a Corpus."""
    from ..files import read_lines

    path = Path(path)
    if path.is_dir():
        found = [p for p in (path / "corpus.jsonl", path / "corpus.jsonl.gz") if p.exists()]
        if not found:
            raise DataError(f"{path}: no corpus.jsonl or corpus.jsonl.gz in this folder")
        path = found[0]
    if not path.exists():
        raise DataError(f"{path}: no such corpus file")
    records = []
    for n, line in read_lines(path):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{n}: not JSON: {e.msg}") from None
    return Corpus(records, name=path.parent.name if path.name.startswith("corpus.") else path.stem)
