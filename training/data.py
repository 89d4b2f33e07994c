"""What a recipe's training sees: examples mined from bench.toml's datasets and rankers."""
from __future__ import annotations

import re
from dataclasses import dataclass, field


def _norm_text(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().casefold()


@dataclass
class Example:
    qid: str
    query: str
    positive: str
    negatives: list[str]
    dataset: str
    doc_ids: list[str] = field(default_factory=list)     # the positive's id, then the negatives'
    scores: list[float] | None = None                    # the teacher's, same order (distillation)


@dataclass
class TrainingData:
    examples: list[Example]
    dev: list[dict]                      # {"query", "positive": [...], "documents": [...]}
    report: dict                         # what the model saw, for data.json and the report
