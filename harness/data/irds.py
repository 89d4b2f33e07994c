"""``irds:`` ids through ir_datasets (imported only when such a dataset is opened)."""
from __future__ import annotations

import hashlib
import json
import os
from functools import cached_property
from pathlib import Path
from typing import Iterable, Mapping

from ..conventions import conventions_for_irds, get_conventions
from ..errors import ConfigError, DataError, unknown
from ..types import Doc, Qrels, Queries
from .base import Dataset, DatasetSpec, _digest
from .seed import seed_irds


def irds_home() -> Path:
    """ir_datasets' home: $IR_DATASETS_HOME if set, else a folder in rankbench's home.

    ir_datasets creates some 18 folders there when imported, so it never defaults to ~.
    """
    from ..cache import rankbench_home

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
