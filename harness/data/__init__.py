"""Datasets: ``local:`` folders in the BEIR layout and ``irds:`` ids through ir_datasets.

A local folder holds ``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv`` and optionally
``runs/<name>.trec`` (each may be gzipped), an optional ``dataset.toml`` (name, conventions,
whether it is a reranking set) and an optional ``MANIFEST.tsv`` of sha256 digests that is
verified whenever a file is read. Every parse error names the file and line.

The queries of a dataset are those of its split: the ones its qrels judge.
"""
from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError
from .base import Dataset, DatasetSpec, check_run_file
from .irds import IrdsDataset, irds_home
from .local import LocalDataset, read_manifest, write_manifest
from .memory import Corpus, RequestCorpus, read_corpus
from .seed import seed_irds

__all__ = ["Corpus", "RequestCorpus", "read_corpus", "Dataset", "DatasetSpec", "IrdsDataset", "LocalDataset", "check_run_file", "irds_home", "open_dataset",
           "read_manifest", "seed_irds", "write_manifest"]


def open_dataset(spec: DatasetSpec, root: Path) -> Dataset:
    if spec.scheme == "local":
        return LocalDataset(spec, root)
    if spec.scheme == "irds":
        return IrdsDataset(spec, root)
    raise ConfigError(f"[datasets.{spec.name}]: source {spec.source!r} must start with local: or irds:")
