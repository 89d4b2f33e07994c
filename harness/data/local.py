"""``local:`` folders in the BEIR layout, their MANIFEST.tsv, and reading every line with its place."""
from __future__ import annotations

import hashlib
import json
import re
from functools import cached_property
from pathlib import Path
from typing import Iterable, Mapping

from ..conventions import get_conventions
from ..errors import ConfigError, DataError, unknown
from ..files import atomic_write_bytes, read_lines, read_toml, sha256_file
from ..types import Doc, Qrels, Queries, Run, bad_id, read_trec_run
from .base import Dataset, DatasetSpec, _digest, check_run_file


_META_KEYS = {"name", "description", "conventions", "rerank_only", "queries_only", "irds", "terms"}


def _find(folder: Path, rel: str) -> Path | None:
    plain, packed = folder / rel, folder / (rel + ".gz")
    if plain.exists() and packed.exists():
        raise DataError(f"{folder}: both {rel} and {rel}.gz exist; keep one")
    return plain if plain.exists() else packed if packed.exists() else None


def read_manifest(folder: Path) -> dict[str, tuple[int, str]] | None:
    path = folder / "MANIFEST.tsv"
    if not path.exists():
        return None
    out = {}
    header = None
    for n, line in read_lines(path):
        cols = line.rstrip("\r\n").split("\t")
        if header is None:
            header = cols
            if header[:3] != ["path", "bytes", "sha256"]:
                raise DataError(f"{path}:1: header must start with path<TAB>bytes<TAB>sha256, found {header[:3]}")
            continue
        if not line.strip():
            continue
        if len(cols) < 3 or not cols[1].isdigit() or not re.fullmatch(r"[0-9a-f]{64}", cols[2]):
            raise DataError(f"{path}:{n}: expected path, byte count and sha256, found {line.strip()[:80]!r}")
        out[cols[0]] = (int(cols[1]), cols[2])
    if header is None:
        raise DataError(f"{path}: empty; regenerate it with `rankbench manifest {folder}`")
    return out


def _manifest_extra(folder: Path) -> tuple[list[str], dict[str, tuple[str, list[str]]]]:
    """The columns after path, bytes, sha256 of an existing MANIFEST.tsv (the shipped ones record
    each file's uncompressed size and sha256, raw_bytes and raw_sha256), by path: (sha256, values)."""
    path = folder / "MANIFEST.tsv"
    if not path.exists():
        return [], {}
    rows = [line.rstrip("\r\n").split("\t") for _, line in read_lines(path) if line.strip()]
    if not rows or rows[0][:3] != ["path", "bytes", "sha256"]:
        return [], {}
    extra = rows[0][3:]
    return extra, {r[0]: (r[2], r[3:]) for r in rows[1:] if len(r) == 3 + len(extra)}


def _raw_digest(path: Path) -> list[str]:
    """raw_bytes and raw_sha256: the size and sha256 of a file's uncompressed content."""
    import gzip

    h, size = hashlib.sha256(), 0
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
            size += len(block)
    return [str(size), h.hexdigest()]


def write_manifest(folder: Path) -> Path:
    """(Re)write MANIFEST.tsv for every data file in a folder (for users adding their own data)."""
    extra, old = _manifest_extra(folder)
    rows = []
    for p in sorted(folder.rglob("*")):
        if p.is_file() and p.name not in ("MANIFEST.tsv", "dataset.toml", "README.md") and not p.name.startswith("."):
            rel, digest = p.relative_to(folder).as_posix(), sha256_file(p)
            cols = [rel, str(p.stat().st_size), digest]
            if extra:   # kept where the file is unchanged; computed anew for the raw_* columns
                if rel in old and old[rel][0] == digest:
                    cols += old[rel][1]
                elif extra == ["raw_bytes", "raw_sha256"]:
                    try:
                        cols += _raw_digest(p)
                    except (OSError, EOFError) as e:
                        raise DataError(f"{p}: cannot read its uncompressed content ({e})") from None
                else:
                    cols += [""] * len(extra)
            rows.append("\t".join(cols) + "\n")
    path = folder / "MANIFEST.tsv"
    atomic_write_bytes(path, ("\t".join(["path", "bytes", "sha256", *extra]) + "\n" + "".join(rows)).encode())
    return path


class LocalDataset(Dataset):
    def __init__(self, spec: DatasetSpec, root: Path):
        self.name = spec.name
        self.source = spec.source
        self.split = spec.split
        loc = Path(spec.location).expanduser()
        self.folder = loc if loc.is_absolute() else (root / loc)
        if not self.folder.is_dir():
            raise ConfigError(f"[datasets.{spec.name}]: folder {self.folder} not found "
                              f"(source = {spec.source!r})")
        self.meta = self._read_meta()
        conv = spec.conventions or self.meta.get("conventions", "generic")
        self.conventions = get_conventions(conv, f"[datasets.{spec.name}]")
        self.rerank_only = bool(self.meta.get("rerank_only", False))
        self.queries_only = bool(self.meta.get("queries_only", False))
        self.title = self.meta.get("name", spec.name)
        self.description = spec.description or self.meta.get("description", "")
        self.irds_equivalent = self.meta.get("irds")
        self.manifest = read_manifest(self.folder)
        self._used: dict[str, str] = {}   # relative path -> sha256, of the files read

    def _read_meta(self) -> dict:
        path = self.folder / "dataset.toml"
        if not path.exists():
            return {}
        meta = read_toml(path)
        for key, value in meta.items():
            if key not in _META_KEYS:
                raise DataError(f"{path}: " + unknown("key", key, _META_KEYS))
            want = bool if key in ("rerank_only", "queries_only") else str
            if not isinstance(value, want):
                raise DataError(f"{path}: {key} must be {'true or false' if want is bool else 'a string'}, "
                                f"found {value!r}")
        return meta

    def file(self, rel: str, required: bool = True) -> Path | None:
        """The path of a data file, its checksum verified against MANIFEST.tsv if there is one."""
        path = _find(self.folder, rel)
        if path is None:
            if required:
                raise DataError(f"{self.folder}: missing {rel} (or {rel}.gz), needed by {self.where}")
            return None
        key = path.relative_to(self.folder).as_posix()
        digest = sha256_file(path)
        if self.manifest is not None:
            if key not in self.manifest:
                raise DataError(f"{path}: not listed in {self.folder / 'MANIFEST.tsv'}; "
                                f"regenerate it with `rankbench manifest {self.folder}`")
            size, expected = self.manifest[key]
            if digest != expected or path.stat().st_size != size:
                raise DataError(f"{path}: sha256 {digest[:12]}... does not match MANIFEST.tsv "
                                f"({expected[:12]}...): the file was changed or is corrupt")
        self._used[key] = digest
        return path

    # -- parsing ------------------------------------------------------------------------------

    @staticmethod
    def _jsonl(path: Path, kind: str, need_text: bool) -> Iterable[tuple[int, dict]]:
        for n, line in read_lines(path):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{n}: invalid JSON ({e.msg} at column {e.colno})") from None
            except RecursionError:
                raise DataError(f"{path}:{n}: invalid JSON (nested too deeply)") from None
            if not isinstance(obj, dict):
                raise DataError(f"{path}:{n}: each line must be a JSON object, found {type(obj).__name__}")
            if "_id" not in obj:
                raise DataError(f"{path}:{n}: {kind} has no \"_id\"")
            if isinstance(obj["_id"], bool) or not isinstance(obj["_id"], (str, int)) or str(obj["_id"]).strip() == "":
                raise DataError(f"{path}:{n}: \"_id\" must be a non-empty string, found {obj['_id']!r}")
            why = bad_id(str(obj["_id"]))
            if why:
                raise DataError(f"{path}:{n}: {kind} id {str(obj['_id'])!r} {why}; use an id without spaces")
            if need_text and not isinstance(obj.get("text"), str):
                raise DataError(f"{path}:{n}: {kind} {obj['_id']!r} needs a string \"text\"")
            if "title" in obj and obj["title"] is not None and not isinstance(obj["title"], str):
                raise DataError(f"{path}:{n}: \"title\" must be a string")
            yield n, obj

    @cached_property
    def _all_queries(self) -> dict[str, tuple[str, int]]:
        path = self.file("queries.jsonl")
        out: dict[str, tuple[str, int]] = {}
        for n, obj in self._jsonl(path, "query", need_text=True):
            qid = str(obj["_id"])
            if qid in out:
                raise DataError(f"{path}:{n}: duplicate query id {qid!r} (first on line {out[qid][1]})")
            out[qid] = (obj["text"], n)
        if not out:
            raise DataError(f"{path}: no queries (the file is empty)")
        return out

    @cached_property
    def _qrels(self) -> Qrels:
        rel = f"qrels/{self.split}.tsv"
        path = self.file(rel)
        qrels: Qrels = {}
        for n, line in read_lines(path):
            if not line.strip():
                continue
            cols = line.rstrip("\r\n").split("\t")
            if n == 1 and cols[0] in ("query-id", "qid", "query_id"):
                continue
            if len(cols) == 1 and len(line.split()) == 4:   # TREC qrels separated by spaces
                cols = line.split()
            if len(cols) == 4:   # TREC qrels: qid iteration docid rel
                cols = [cols[0], cols[2], cols[3]]
            if len(cols) != 3:
                raise DataError(f"{path}:{n}: expected query-id<TAB>corpus-id<TAB>score, "
                                f"found {len(cols)} columns: {line.strip()[:80]!r}")
            qid, docid, grade = cols
            for what, value in (("query", qid), ("doc", docid)):
                why = bad_id(value)
                if why:
                    raise DataError(f"{path}:{n}: {what} id {value!r} {why}")
            try:
                value = int(grade)
            except ValueError:
                raise DataError(f"{path}:{n}: relevance must be an integer, found {grade!r}") from None
            docs = qrels.setdefault(qid, {})
            if docid in docs and docs[docid] != value:
                raise DataError(f"{path}:{n}: query {qid!r} doc {docid!r} judged twice "
                                f"({docs[docid]} and {value})")
            docs[docid] = value
        if not qrels:
            raise DataError(f"{path}: no judgments")
        return qrels

    def qrels(self) -> Qrels:
        return self._qrels

    @cached_property
    def _queries(self) -> Queries:
        allq = self._all_queries
        qpath = _find(self.folder, "queries.jsonl")
        out: Queries = {}
        for qid in self._qrels:
            if qid not in allq:
                raise DataError(f"{self.folder}/qrels/{self.split}.tsv: query {qid!r} is judged "
                                f"but has no text in {qpath.name}")
            text, line = allq[qid]
            if not text.strip():
                raise DataError(f"{qpath}:{line}: query {qid!r} is empty")
            out[qid] = text
        return dict(sorted(out.items()))

    def queries(self) -> Queries:
        return self._queries

    def all_queries(self) -> Queries:
        """Every query in queries.jsonl, of every split."""
        return {qid: text for qid, (text, _) in self._all_queries.items()}

    @cached_property
    def _corpus(self) -> dict[str, Doc]:
        if self.queries_only:
            raise DataError(f"{self.where} ships queries and qrels only, no corpus: "
                            f"rankers that read documents cannot run on it")
        path = self.file("corpus.jsonl")
        out: dict[str, Doc] = {}
        lines: dict[str, int] = {}
        for n, obj in self._jsonl(path, "document", need_text=True):
            did = str(obj["_id"])
            if did in out:
                raise DataError(f"{path}:{n}: duplicate document id {did!r} (first on line {lines[did]})")
            out[did] = Doc(obj.get("title") or "", obj["text"])
            lines[did] = n
        if not out:
            raise DataError(f"{path}: no documents")
        return out

    def corpus(self) -> Mapping[str, Doc]:
        return self._corpus

    def doc_ids(self):
        return None if self.queries_only else self._corpus

    def run_names(self) -> list[str]:
        runs = self.folder / "runs"
        if not runs.is_dir():
            return []
        names = set()
        for p in runs.iterdir():
            n = p.name
            for suffix in (".trec.gz", ".trec"):
                if n.endswith(suffix):
                    names.add(n[: -len(suffix)])
        return sorted(names)

    def load_run(self, name: str) -> Run:
        if name not in self.run_names():
            raise DataError(unknown("first-stage run", name, self.run_names(), self.where))
        path = self.file(f"runs/{name}.trec")
        return check_run_file(read_trec_run(path), path, self)

    def _digest_of(self, rels: Iterable[str]) -> str:
        parts = []
        for rel in rels:
            path = self.file(rel, required=False)
            if path is not None:
                parts.append(f"{path.relative_to(self.folder).as_posix()}={sha256_file(path)}")
        return _digest(*parts)

    def corpus_fingerprint(self) -> str:
        return _digest("local-corpus", self._digest_of(["corpus.jsonl"]))

    def fingerprint(self) -> str:
        return _digest("local", self.split, self.conventions.name,
                       self._digest_of(["corpus.jsonl", "queries.jsonl", f"qrels/{self.split}.tsv"]))

    def run_fingerprint(self, name: str) -> str:
        return self._digest_of([f"runs/{name}.trec"])

    def stats(self) -> dict:
        s = super().stats()
        if not self.queries_only:
            s["docs"] = len(self.corpus())
        return s

    def validate(self) -> None:
        super().validate()
        if not self.queries_only:
            self.corpus()
        for name in self.run_names():
            self.load_run(name)
