"""What each family of test collections expects: its measures and its evaluation conventions.

Measures are ir_measures strings, so ``AP(rel=2)@1000`` means trec_eval ``-c -l 2 -m map_cut``
on a 1000-deep run: on graded TREC DL judgments binary measures count grade 2 and above as
relevant, while nDCG uses the grades.
"""
from __future__ import annotations

from dataclasses import dataclass

from .errors import ConfigError, unknown


@dataclass(frozen=True)
class Conventions:
    name: str
    measures: tuple[str, ...]
    drop_self_hits: bool
    description: str
    rel_level: int = 1        # the lowest grade that counts as relevant for binary measures


CONVENTIONS: dict[str, Conventions] = {
    c.name: c
    for c in (
        Conventions(
            "trec-dl",
            ("nDCG@10", "RR(rel=2)@10", "AP(rel=2)@1000", "R(rel=2)@100"),
            drop_self_hits=False,
            description="TREC Deep Learning: graded qrels 0-3, binary measures count grade >= 2",
            rel_level=2,
        ),
        Conventions(
            "beir",
            ("nDCG@10", "RR@10", "AP@100", "R@100"),
            drop_self_hits=True,
            description="BEIR: any hit whose doc id equals its query id is dropped before scoring",
        ),
        Conventions(
            "msmarco",
            ("RR@10", "R@1000", "nDCG@10"),
            drop_self_hits=False,
            description="MS MARCO dev: sparse binary qrels, MRR@10 the official measure",
        ),
        Conventions(
            "generic",
            ("nDCG@10", "RR@10", "AP@100", "R@100"),
            drop_self_hits=False,
            description="any collection: BEIR's measures, no special conventions",
        ),
    )
}


def get_conventions(name: str, where: str = "") -> Conventions:
    if name not in CONVENTIONS:
        raise ConfigError(unknown("conventions", name, CONVENTIONS, where))
    return CONVENTIONS[name]


def conventions_for_irds(dataset_id: str) -> str:
    """Infer the conventions of an ir_datasets id."""
    if dataset_id.startswith("beir/"):
        return "beir"
    if dataset_id.startswith("msmarco-passage/trec-dl") or dataset_id.startswith("msmarco-document/trec-dl"):
        return "trec-dl"
    if dataset_id.startswith("msmarco-passage/"):
        return "msmarco"
    return "generic"
