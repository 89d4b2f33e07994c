"""Seeding ir_datasets' cache from a shipped copy, so ``irds:`` ids work offline."""
from __future__ import annotations

import os
import zipfile
from pathlib import Path

from ..errors import DataError
from ..files import atomic_write_bytes, read_text
from .base import DatasetSpec
from .local import LocalDataset


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
                    z.writestr(f"{name}/{arc}", read_text(path).encode("utf-8"))
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
