"""Tokenizing (query, document) pairs for any pair scorer: one implementation for every backend.

``PairBatches`` tokenizes all pairs once (query and document as one sequence pair, only the
document truncated), sorts them by token length, and yields batches padded to their own longest
member: little padding, so little wasted compute. It counts the pairs whose document was cut at
``max_length``. A torch cross-encoder and its ONNX export both score through it, so their inputs
are identical token for token.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterator, Sequence

if TYPE_CHECKING:
    import numpy as np


def doc_prefixes(docs: Sequence[str], words: int) -> tuple[list[str], "np.ndarray"]:
    """Each document cut after its first ``words`` whitespace-separated words (the text up to where
    the next word starts, untouched), and which were cut.

    A pair keeps at most max_length tokens, so a document's words past the first max_length never
    reach the model (every word is one token or more). Tokenizing only the prefix gives the same
    tokens (tokenizers split at whitespace first, so a prefix of whole words tokenizes to a prefix
    of the tokens) at a fraction of the cost: SciFact abstracts run to 300 words and more. Exactness
    is checked per pair in ``PairBatches``: a prefix with fewer tokens than max_length, or than the
    query, could change what 'longest_first' keeps, and is replaced by the full text.
    """
    import numpy as np

    out, cut = list(docs), np.zeros(len(docs), dtype=bool)
    for i, d in enumerate(docs):
        parts = d.split(None, words)
        if len(parts) > words:
            out[i] = d[: len(d) - len(parts[words])]
            cut[i] = True
    return out, cut


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
        docs, cut = doc_prefixes([d for _, d in self.pairs], self.max_length)
        # Count what max_length cuts from the untruncated lengths, then truncate with
        # 'longest_first' (a query longer than max_length alone is cut too; 'only_second' would
        # fail on it). Both passes read each long document's first max_length words only (see
        # doc_prefixes); a prefix too short to decide the result exactly falls back to the full text.
        full_lengths = self._lengths(queries, docs)
        if cut.any():
            specials = self.tokenizer.num_special_tokens_to_add(pair=True)
            q_tokens = self._query_tokens(queries)
            d_tokens = full_lengths - q_tokens - specials
            short = np.flatnonzero(cut & ((d_tokens < self.max_length) | (d_tokens < q_tokens)))
            if len(short):
                originals = [self.pairs[i][1] for i in short]
                for i, d in zip(short, originals):
                    docs[i] = d
                full_lengths[short] = self._lengths([queries[i] for i in short], originals)
        enc = self.tokenizer(queries, docs, truncation="longest_first", max_length=self.max_length,
                             return_attention_mask=True)
        lengths = np.fromiter((len(x) for x in enc["input_ids"]), dtype=np.int64, count=len(docs))
        stats = TruncationStats(pairs=len(docs), truncated=int((full_lengths > self.max_length).sum()),
                                tokens=int(lengths.sum()))
        self._encoded = (enc, lengths, stats)
        return self._encoded

    def _lengths(self, queries: list[str], docs: list[str]):
        import numpy as np

        full = self.tokenizer(queries, docs, truncation=False, add_special_tokens=True,
                              return_attention_mask=False, return_token_type_ids=False, verbose=False)
        return np.fromiter((len(x) for x in full["input_ids"]), dtype=np.int64, count=len(docs))

    def _query_tokens(self, queries: list[str]):
        import numpy as np

        unique = list(dict.fromkeys(queries))
        enc = self.tokenizer(unique, add_special_tokens=False, truncation=False, return_attention_mask=False,
                             return_token_type_ids=False, verbose=False)
        n = {q: len(ids) for q, ids in zip(unique, enc["input_ids"])}
        return np.fromiter((n[q] for q in queries), dtype=np.int64, count=len(queries))

    def __len__(self) -> int:
        return (len(self.pairs) + self.batch_size - 1) // self.batch_size

    def positions(self) -> list[list[int]]:
        """The batches iterating yields, as positions only: scoring each batch's pairs on their
        own (in any process) gives the same bits as scoring all at once (distributed.encode)."""
        if not self.pairs:
            return []
        _, lengths, _ = self._encode()
        order = _order(lengths)
        return [order[i:i + self.batch_size].tolist() for i in range(0, len(order), self.batch_size)]

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


def _order(lengths):
    """Longest first, ties in input order: the one batching order of PairBatches and TextBatches."""
    import numpy as np

    return np.argsort(-lengths, kind="stable")


def _padded(enc, pad_id: int, batch_size: int, stats: TruncationStats):
    import numpy as np

    lengths = np.fromiter((len(x) for x in enc["input_ids"]), dtype=np.int64, count=len(enc["input_ids"]))
    stats.pairs += len(lengths)
    stats.tokens += int(lengths.sum())
    order = _order(lengths)
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
