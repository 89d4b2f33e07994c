"""Building an LLM's context from ranked passages: threshold and top-k together, deduplication,
a token budget counted with the reader's tokenizer, and citation ids.

The same packing serves ``RagPipeline`` (a new question) and the harness's context measures (a
dataset's ranked runs against its qrels), so what the leaderboard measures is what RAG code gets.
Every choice is a plain value: ``threshold=0.0`` is a threshold of 0, ``top_k=0`` keeps nothing;
``None`` means "no limit" (Haystack resolved overrides with ``or`` and lost the falsy ones).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Callable, Iterable, Literal, Protocol, Sequence

from harness.errors import ConfigError, RankerUnavailable

Overflow = Literal["truncate", "skip", "stop"]
TEMPLATE = "[{citation}] {title}{text}"


class TokenCounter(Protocol):
    name: str

    def count(self, text: str) -> int: ...

    def cut(self, text: str, n: int) -> str: ...


class HFTokens:
    """Tokens as a Hugging Face tokenizer counts them (no special tokens: they belong to the prompt,
    not to a passage); cutting keeps whole tokens by their character offsets."""

    def __init__(self, tokenizer, name: str):
        self.tok = tokenizer
        self.name = name

    def count(self, text: str) -> int:
        return len(self.tok(text, add_special_tokens=False)["input_ids"])

    def cut(self, text: str, n: int) -> str:
        if n <= 0:
            return ""
        enc = self.tok(text, add_special_tokens=False, return_offsets_mapping=True)
        offsets = enc["offset_mapping"]
        if len(offsets) <= n:
            return text
        return text[: offsets[n - 1][1]]


class CallableTokens:
    """Tokens as a user's callable counts them: ``fn(text)`` returns a count or a token sequence.
    Cutting keeps the longest prefix of whole words that fits (binary search over words)."""

    def __init__(self, fn: Callable[[str], object], name: str | None = None):
        self.fn = fn
        self.name = name or getattr(fn, "__name__", "callable")

    def count(self, text: str) -> int:
        got = self.fn(text)
        if isinstance(got, bool) or not isinstance(got, int):
            try:
                got = len(got)          # a token list
            except TypeError:
                raise ConfigError(f"tokenizer {self.name}: returned {type(got).__name__} for a text; "
                                  f"it must return a token count (int) or a sequence of tokens") from None
        if got < 0:
            raise ConfigError(f"tokenizer {self.name}: returned a negative count ({got})")
        return got

    def cut(self, text: str, n: int) -> str:
        if n <= 0:
            return ""
        if self.count(text) <= n:
            return text
        spans = [m.end() for m in re.finditer(r"\S+", text)]
        lo, hi = 0, len(spans)            # the longest prefix of lo words fits
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self.count(text[: spans[mid - 1]]) <= n:
                lo = mid
            else:
                hi = mid - 1
        return text[: spans[lo - 1]] if lo else ""


def token_counter(tokenizer: "str | Callable | TokenCounter") -> TokenCounter:
    """A Hugging Face tokenizer name or folder (offline: resolved as models are), a callable, or a
    ready counter."""
    if hasattr(tokenizer, "count") and hasattr(tokenizer, "cut"):
        return tokenizer
    if callable(tokenizer):
        return CallableTokens(tokenizer)
    if not isinstance(tokenizer, str) or not tokenizer.strip():
        raise ConfigError(f"tokenizer: give a Hugging Face tokenizer name or folder, or a callable; "
                          f"found {tokenizer!r}")
    return _hf_counter(tokenizer)


_HF: dict[str, HFTokens] = {}


def _hf_counter(name: str) -> HFTokens:
    if name not in _HF:
        from rankers._models import resolve_model

        try:
            path = resolve_model(name).path
        except RankerUnavailable as e:
            raise RankerUnavailable(f"tokenizer {name!r}: {e}") from None
        from rankers.onnx_forward import load_tokenizer     # a resolved local folder, never the hub

        try:
            tok = load_tokenizer(str(path))
        except (OSError, ValueError) as e:
            raise RankerUnavailable(f"tokenizer {name!r}: no tokenizer in {path}: {e}") from None
        if not getattr(tok, "is_fast", False):
            raise RankerUnavailable(f"tokenizer {name!r}: only fast (Rust) tokenizers give the offsets "
                                    f"that cutting a passage needs")
        _HF[name] = HFTokens(tok, name)
    return _HF[name]


# -- candidates and the context ------------------------------------------------------------------

@dataclass(frozen=True)
class Candidate:
    """A ranked passage before the context is built: ``score`` is what the threshold compares
    (calibrated where a calibrator is given), ``raw_score`` the ranker's own."""
    doc_id: str
    text: str
    score: float
    title: str = ""
    raw_score: float | None = None
    retrieval_score: float | None = None
    rank: int = 0


@dataclass(frozen=True)
class Passage:
    citation: int            # [1], [2], ... in context order
    doc_id: str
    title: str
    text: str                # as placed in the context (cut when truncated)
    score: float
    raw_score: float | None
    retrieval_score: float | None
    rank: int                # its rank among the candidates (1 = best)
    tokens: int              # this passage's block, citation header included
    truncated: bool


@dataclass(frozen=True)
class Context:
    passages: tuple[Passage, ...]
    text: str
    tokens: int
    budget: int | None
    dropped: dict = field(default_factory=dict)    # reason -> how many candidates it removed
    tokenizer: str = ""

    def citations(self) -> dict[int, str]:
        return {p.citation: p.doc_id for p in self.passages}


@dataclass(frozen=True)
class ContextSpec:
    """How a context is built. ``budget`` counts tokens of every passage block (the citation header,
    title and text); blocks are joined by a blank line, which the budget counts too."""
    budget: int | None = 512
    top_k: int | None = None                 # at most this many passages; None: as many as fit
    threshold: float | None = None           # keep score >= threshold; None: keep all
    dedupe: bool = True                      # drop repeated doc ids and near-duplicate texts
    near_duplicate: float | None = 0.9       # word-trigram Jaccard at or above which texts are one
    overflow: Overflow = "truncate"          # the first passage over the budget: cut, skip it, or stop
    min_tokens: int = 32                     # a passage cut below this many text tokens is left out
    template: str = TEMPLATE

    def __post_init__(self):
        for name in ("budget", "top_k"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
                raise ConfigError(f"{name}: a whole number >= 0 or None, found {v!r}")
        if self.threshold is not None and (isinstance(self.threshold, bool)
                                           or not isinstance(self.threshold, (int, float))):
            raise ConfigError(f"threshold: a number or None, found {self.threshold!r}")
        if self.near_duplicate is not None and not (0 < self.near_duplicate <= 1):
            raise ConfigError(f"near_duplicate: a Jaccard similarity in (0, 1] or None, found {self.near_duplicate!r}")
        if self.overflow not in ("truncate", "skip", "stop"):
            raise ConfigError(f"overflow: one of truncate, skip, stop; found {self.overflow!r}")
        if isinstance(self.min_tokens, bool) or not isinstance(self.min_tokens, int) or self.min_tokens < 0:
            raise ConfigError(f"min_tokens: a whole number >= 0, found {self.min_tokens!r}")
        for key in ("{citation}", "{text}"):
            if key not in self.template:
                raise ConfigError(f"template: must contain {key}, found {self.template!r}")


@lru_cache(maxsize=65536)
def shingles(text: str) -> frozenset:
    words = re.findall(r"\w+", text.lower())
    if len(words) < 3:
        return frozenset(words)
    return frozenset(zip(words, words[1:], words[2:]))


def jaccard(a: frozenset, b: frozenset) -> float:
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


class _Selector:
    """Threshold, dedupe and top-k, one candidate at a time in rank order."""

    def __init__(self, spec: ContextSpec):
        self.spec = spec
        self.dropped = {"below_threshold": 0, "duplicate_id": 0, "near_duplicate": 0, "over_top_k": 0}
        self.kept = 0
        self.seen_ids: set[str] = set()
        self.seen_text: list[frozenset] = []

    def accept(self, c: Candidate) -> bool:
        spec, dropped = self.spec, self.dropped
        if spec.threshold is not None and not c.score >= spec.threshold:     # NaN never passes
            dropped["below_threshold"] += 1
            return False
        if spec.dedupe:
            if c.doc_id in self.seen_ids:
                dropped["duplicate_id"] += 1
                return False
            sh = shingles(c.title + " " + c.text)
            if spec.near_duplicate is not None and any(jaccard(sh, o) >= spec.near_duplicate for o in self.seen_text):
                dropped["near_duplicate"] += 1
                return False
            self.seen_ids.add(c.doc_id)
            self.seen_text.append(sh)
        if spec.top_k is not None and self.kept >= spec.top_k:
            dropped["over_top_k"] += 1
            return False
        self.kept += 1
        return True


def select(candidates: Iterable[Candidate], spec: ContextSpec) -> tuple[list[Candidate], dict]:
    """Threshold, dedupe and top-k, in that order, keeping rank order; and what each removed."""
    sel = _Selector(spec)
    kept = [c for c in candidates if sel.accept(c)]
    return kept, sel.dropped


SEPARATOR = "\n\n"


def build_context(candidates: Sequence[Candidate], spec: ContextSpec, tokens: TokenCounter) -> Context:
    """The context an LLM reads: the selected candidates in rank order, each a block with its
    citation id, packed into the token budget."""
    sel = _Selector(spec)
    dropped = sel.dropped
    dropped["over_budget"] = 0
    sep = tokens.count(SEPARATOR) if spec.budget is not None else 0
    passages: list[Passage] = []
    used = 0
    stopped = False
    for c in candidates:
        if stopped:
            # the budget is full: the rest are not looked at further (not deduplicated, say)
            dropped["over_budget"] += 1
            continue
        if not sel.accept(c):
            continue
        n = len(passages) + 1
        title = f"{c.title}\n" if c.title else ""
        block = spec.template.format(citation=n, title=title, text=c.text)
        cost = tokens.count(block) + (sep if passages else 0)
        text, truncated = c.text, False
        if spec.budget is not None and used + cost > spec.budget:
            if spec.overflow == "skip":
                dropped["over_budget"] += 1
                stopped = used >= spec.budget
                continue
            stopped = True
            if spec.overflow == "stop":
                dropped["over_budget"] += 1
                continue
            # truncate: the text cut so that the block fills what is left
            head = tokens.count(spec.template.format(citation=n, title=title, text="")) + (sep if passages else 0)
            room = spec.budget - used - head
            text = tokens.cut(c.text, room) if room > 0 else ""
            # a tokenizer may count a cut text's block a little differently: shrink until it fits
            while text and used + tokens.count(spec.template.format(citation=n, title=title, text=text)) \
                    + (sep if passages else 0) > spec.budget:
                text = tokens.cut(text, max(0, tokens.count(text) - 1))
            if not text or tokens.count(text) < spec.min_tokens:
                dropped["over_budget"] += 1
                continue
            block = spec.template.format(citation=n, title=title, text=text)
            cost = tokens.count(block) + (sep if passages else 0)
            truncated = True
        used += cost
        passages.append(Passage(n, c.doc_id, c.title, text, c.score, c.raw_score, c.retrieval_score,
                                c.rank, cost - (sep if len(passages) else 0), truncated))
    text = SEPARATOR.join(spec.template.format(citation=p.citation, title=f"{p.title}\n" if p.title else "",
                                               text=p.text) for p in passages)
    return Context(tuple(passages), text, used, spec.budget, dropped, tokens.name)
