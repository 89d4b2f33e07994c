"""Datasets: ``local:`` folders in the BEIR layout and ``irds:`` ids through ir_datasets.

A local folder holds ``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv`` and optionally
``runs/<name>.trec`` (each may be gzipped), an optional ``dataset.toml`` (name, conventions,
whether it is a reranking set) and an optional ``MANIFEST.tsv`` of sha256 digests that is
verified whenever a file is read. Every parse error names the file and line.

The queries of a dataset are those of its split: the ones its qrels judge.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import tomllib
import zipfile
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Iterable, Mapping

from .conventions import Conventions, conventions_for_irds, get_conventions
from .errors import ConfigError, DataError, unknown
from .files import atomic_write_bytes, open_text, read_lines, read_text, sha256_file
from .types import Doc, Qrels, Queries, Run, bad_id, read_trec_run


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


# ---------------------------------------------------------------------------------------------
# local: folders

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
        try:
            meta = tomllib.loads(read_text(path))
        except tomllib.TOMLDecodeError as e:
            raise DataError(f"{path}: {e}") from None
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


# ---------------------------------------------------------------------------------------------
# irds: ids

def irds_home() -> Path:
    """ir_datasets' home: $IR_DATASETS_HOME if set, else a folder in rankbench's home.

    ir_datasets creates some 18 folders there when imported, so it never defaults to ~.
    """
    from .cache import rankbench_home

    return Path(os.environ.get("IR_DATASETS_HOME") or (rankbench_home() / "ir_datasets"))


def _import_ir_datasets():
    """Every import of ir_datasets goes through here: its home is fixed when it is first imported."""
    os.environ.setdefault("IR_DATASETS_HOME", str(irds_home()))
    try:
        import ir_datasets
    except ImportError:
        raise ConfigError("irds: datasets need ir_datasets: pip install 'rankbench[irds]'") from None
    return ir_datasets


class IrdsDataset(Dataset):
    def __init__(self, spec: DatasetSpec, root: Path):
        self.name = spec.name
        self.source = spec.source
        self.irds_id = spec.location
        self.split = self.irds_id.rsplit("/", 1)[-1]
        self.conventions = get_conventions(spec.conventions or conventions_for_irds(self.irds_id),
                                           f"[datasets.{spec.name}]")
        self.title = self.irds_id
        self.description = spec.description or f"ir_datasets {self.irds_id}"
        self.seed_from = (root / spec.seed_from) if spec.seed_from else None
        self.seeded: list[str] = []

    @cached_property
    def _ds(self):
        ir_datasets = _import_ir_datasets()
        if self.irds_id not in ir_datasets.registry:
            raise ConfigError(f"[datasets.{self.name}]: " + unknown("ir_datasets id", self.irds_id,
                              [k for k in ir_datasets.registry if k.split("/")[0] == self.irds_id.split("/")[0]]))
        if self.seed_from is not None:
            # where ir_datasets itself looks, even if something imported it before us
            self.seeded = seed_irds(self.irds_id, self.seed_from, Path(ir_datasets.util.home_path()))
        return ir_datasets.load(self.irds_id)

    def _call(self, what: str, fn):
        try:
            return fn()
        except Exception as e:   # ir_datasets raises requests/OS errors when it cannot download
            hint = ""
            if self.seed_from is None:
                hint = (" Offline? ir_datasets reads files already at its cache paths: set seed_from "
                        "= \"<local copy>\" on this dataset in bench.toml, or run `rankbench seed-irds`.")
            raise DataError(f"{self.where}: ir_datasets could not provide the {what}: "
                            f"{type(e).__name__}: {str(e)[:300]}.{hint}") from None

    @cached_property
    def _qrels(self) -> Qrels:
        ds = self._ds
        if not ds.has_qrels():
            raise DataError(f"{self.where}: has no qrels")
        qrels: Qrels = {}
        for q in self._call("qrels", lambda: list(ds.qrels_iter())):
            qrels.setdefault(q.query_id, {})[q.doc_id] = int(q.relevance)
        return qrels

    def qrels(self) -> Qrels:
        return self._qrels

    @cached_property
    def _queries(self) -> Queries:
        ds = self._ds
        judged = self._qrels
        out = {}
        for q in self._call("queries", lambda: list(ds.queries_iter())):
            if q.query_id in judged:
                text = getattr(q, "text", None)
                out[q.query_id] = text if isinstance(text, str) else q.default_text()
        missing = sorted(set(judged) - set(out))
        if missing:
            raise DataError(f"{self.where}: {len(missing)} judged queries have no text, e.g. {missing[0]!r}")
        empty = [q for q, t in out.items() if not t.strip()]
        if empty:
            raise DataError(f"{self.where}: query {empty[0]!r} is empty")
        return dict(sorted(out.items()))

    def queries(self) -> Queries:
        return self._queries

    @staticmethod
    def _doc(d) -> Doc:
        title = getattr(d, "title", "") or ""
        text = getattr(d, "text", None)
        return Doc(title, text if isinstance(text, str) else d.default_text())

    @cached_property
    def _corpus(self) -> dict[str, Doc]:
        ds = self._ds
        return self._call("documents", lambda: {d.doc_id: self._doc(d) for d in ds.docs_iter()})

    def corpus(self) -> Mapping[str, Doc]:
        return self._corpus

    def doc_ids(self):
        return self.__dict__.get("_corpus")

    def docs(self, ids: Iterable[str]) -> dict[str, Doc]:
        if "_corpus" in self.__dict__:
            return super().docs(ids)
        ids = list(ids)
        store = self._call("document store", lambda: self._ds.docs_store())
        found = self._call("documents", lambda: store.get_many(ids))
        missing = [i for i in ids if i not in found]
        if missing:
            raise DataError(f"{self.where}: doc {missing[0]!r} is not in the corpus")
        return {i: self._doc(found[i]) for i in ids}

    def _docs_owner(self) -> str:
        parts = self.irds_id.split("/")
        return "/".join(parts[:2]) if parts[0] == "beir" else parts[0]

    def corpus_fingerprint(self) -> str:
        return _digest("irds-corpus", self._docs_owner(), _import_ir_datasets().__version__)

    @cached_property
    def _fingerprint(self) -> str:
        ir_datasets = _import_ir_datasets()
        content = json.dumps([self.queries(), self.qrels()], sort_keys=True)
        return _digest("irds", self.irds_id, ir_datasets.__version__, self.conventions.name,
                       hashlib.sha256(content.encode()).hexdigest())

    def fingerprint(self) -> str:
        return self._fingerprint     # serialises every query and judgment: once per dataset

    def validate(self) -> None:
        _ = self._ds   # loads the id (checking it exists); downloads nothing


# ---------------------------------------------------------------------------------------------
# seeding ir_datasets' cache from a shipped copy (offline)

def seed_irds(irds_id: str, local: Path, home: Path) -> list[str]:
    """Place a local copy's files where ir_datasets looks for its downloads; returns what was written.

    ir_datasets uses a file already at its cache path without downloading (and without checking
    it), so the copy must be the real data: the shipped folders are verified against their
    MANIFEST.tsv first. Existing files are never overwritten. Supported: beir/<name>[/<split>]
    (corpus, queries, all qrels, as the BEIR zip holds them) and the queries and qrels of
    msmarco-passage/trec-dl-2019, trec-dl-2020 and dev/small. The MS MARCO passage collection
    itself (8.8M passages) is not shipped, so its documents stay unavailable offline.
    """
    local = Path(local).resolve()
    spec = DatasetSpec(name=f"seed:{irds_id}", source=f"local:{local}")
    src = LocalDataset(spec, local)
    written: list[str] = []
    parts = irds_id.split("/")
    if parts[0] == "beir" and len(parts) >= 2:
        name = parts[1]
        target = home / "beir" / name / "source.zip"
        if not target.exists():
            members = {"corpus.jsonl": src.file("corpus.jsonl"), "queries.jsonl": src.file("queries.jsonl")}
            for p in sorted((src.folder / "qrels").iterdir()):
                split = p.name.split(".")[0]
                members[f"qrels/{split}.tsv"] = src.file(f"qrels/{split}.tsv")
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_suffix(".zip.tmp")
            with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
                for arc, path in members.items():
                    with open_text(path) as f:
                        z.writestr(f"{name}/{arc}", f.read().encode("utf-8"))
            os.replace(tmp, target)
            written.append(str(target))
        return written
    msmarco = {
        "msmarco-passage/trec-dl-2019": "trec-dl-2019",
        "msmarco-passage/trec-dl-2020": "trec-dl-2020",
        "msmarco-passage/dev/small": "dev/small",
    }
    for prefix, sub in msmarco.items():
        if irds_id == prefix or irds_id.startswith(prefix + "/"):
            base = home / "msmarco-passage" / sub
            queries = base / "queries.tsv"
            qrels = base / "qrels"
            if not queries.exists():
                text = "".join(f"{q}\t{t}\n" for q, t in src.all_queries().items())
                atomic_write_bytes(queries, text.encode("utf-8"))
                written.append(str(queries))
            if not qrels.exists():
                lines = [f"{q} 0 {d} {r}\n" for q, docs in src.qrels().items() for d, r in docs.items()]
                atomic_write_bytes(qrels, "".join(lines).encode("utf-8"))
                written.append(str(qrels))
            return written
    raise DataError(f"seeding ir_datasets for {irds_id!r} is not supported; supported: beir/<name>, "
                    + ", ".join(msmarco))


def open_dataset(spec: DatasetSpec, root: Path) -> Dataset:
    if spec.scheme == "local":
        return LocalDataset(spec, root)
    if spec.scheme == "irds":
        return IrdsDataset(spec, root)
    raise ConfigError(f"[datasets.{spec.name}]: source {spec.source!r} must start with local: or irds:")
