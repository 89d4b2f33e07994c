"""Tokenizing (query, document) pairs for any pair scorer: one implementation for every backend.

``PairBatches`` tokenizes all pairs once (query and document as one sequence pair, only the
document truncated), sorts them by token length, and yields batches padded to their own longest
member: little padding, so little wasted compute. It counts the pairs whose document was cut at
``max_length``. A torch cross-encoder and its ONNX export both score through it, so their inputs
are identical token for token.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, Sequence


@dataclass
class TruncationStats:
    pairs: int = 0
    truncated: int = 0
    tokens: int = 0          # real (unpadded) tokens scored
    padded_tokens: int = 0   # tokens including each batch's padding

    @property
    def share(self) -> float | None:
        return round(self.truncated / self.pairs, 4) if self.pairs else None

    def add(self, other: "TruncationStats") -> None:
        self.pairs += other.pairs
        self.truncated += other.truncated
        self.tokens += other.tokens
        self.padded_tokens += other.padded_tokens

    def as_dict(self) -> dict:
        return {"pairs": self.pairs, "truncated": self.truncated, "truncated_share": self.share,
                "mean_tokens": round(self.tokens / self.pairs, 1) if self.pairs else None,
                "padding_share": round(1 - self.tokens / self.padded_tokens, 4) if self.padded_tokens else None}


@dataclass
class PairBatches:
    """Length-sorted, dynamically padded batches of tokenized pairs.

    Iterating yields ``(positions, features)``: the pairs' indices in the input order and a dict
    of numpy int64 arrays (input_ids, attention_mask, and token_type_ids when the tokenizer makes
    them). ``stats`` says how many pairs were truncated.
    """

    tokenizer: object
    pairs: Sequence[tuple[str, str]]
    max_length: int
    batch_size: int = 32
    stats: TruncationStats = field(default_factory=TruncationStats)

    def __post_init__(self):
        if self.max_length < 8:
            raise ValueError(f"max_length {self.max_length} is too small for a (query, document) pair")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, not {self.batch_size}")
        self._encoded = None

    def _encode(self):
        import numpy as np

        if self._encoded is not None:
            return self._encoded
        queries = [q for q, _ in self.pairs]
        docs = [d for _, d in self.pairs]
        # Tokenize once without truncation to count what max_length cuts, then truncate the doc
        # only (a query longer than max_length alone is cut too: 'longest_first' would otherwise
        # silently starve the document).
        full = self.tokenizer(queries, docs, truncation=False, add_special_tokens=True,
                              return_attention_mask=False, return_token_type_ids=False, verbose=False)
        full_lengths = np.fromiter((len(x) for x in full["input_ids"]), dtype=np.int64, count=len(docs))
        enc = self.tokenizer(queries, docs, truncation="longest_first", max_length=self.max_length,
                             return_attention_mask=True)
        lengths = np.fromiter((len(x) for x in enc["input_ids"]), dtype=np.int64, count=len(docs))
        stats = TruncationStats(pairs=len(docs), truncated=int((full_lengths > self.max_length).sum()),
                                tokens=int(lengths.sum()))
        self._encoded = (enc, lengths, stats)
        return self._encoded

    def __len__(self) -> int:
        return (len(self.pairs) + self.batch_size - 1) // self.batch_size

    def __iter__(self) -> Iterator[tuple[list[int], dict]]:
        if not self.pairs:
            return
        enc, lengths, stats = self._encode()
        self.stats = TruncationStats(truncated=stats.truncated)
        yield from _padded(enc, self.tokenizer.pad_token_id or 0, self.batch_size, self.stats)


@dataclass
class TextBatches:
    """Single texts (a bi-encoder's queries or documents), tokenized once, truncated at
    ``max_length``, sorted by token length and padded to each batch's longest: the same batching
    as ``PairBatches``, for models that read one text at a time. Yields ``(positions, features)``."""

    tokenizer: object
    texts: Sequence[str]
    max_length: int
    batch_size: int = 32
    stats: TruncationStats = field(default_factory=TruncationStats)

    def __post_init__(self):
        if self.max_length < 2:
            raise ValueError(f"max_length {self.max_length} is too small for a text")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, not {self.batch_size}")

    def __len__(self) -> int:
        return (len(self.texts) + self.batch_size - 1) // self.batch_size

    def __iter__(self) -> Iterator[tuple[list[int], dict]]:
        if not self.texts:
            return
        enc = self.tokenizer(list(self.texts), truncation=True, max_length=self.max_length,
                             return_attention_mask=True)
        yield from _padded(enc, self.tokenizer.pad_token_id or 0, self.batch_size, self.stats)


def _padded(enc, pad_id: int, batch_size: int, stats: TruncationStats):
    import numpy as np

    lengths = np.fromiter((len(x) for x in enc["input_ids"]), dtype=np.int64, count=len(enc["input_ids"]))
    stats.pairs += len(lengths)
    stats.tokens += int(lengths.sum())
    order = np.argsort(-lengths, kind="stable")
    keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc]
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size].tolist()
        width = int(lengths[idx[0]])
        stats.padded_tokens += width * len(idx)
        batch = {}
        for key in keys:
            arr = np.full((len(idx), width), pad_id if key == "input_ids" else 0, dtype=np.int64)
            for row, i in enumerate(idx):
                seq = enc[key][i]
                arr[row, :len(seq)] = seq
            batch[key] = arr
        yield idx, batch
