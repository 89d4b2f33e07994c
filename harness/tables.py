"""The report's data model: a table is its columns (a header, how a row's cell reads, its
alignment) and its rows; rendering it to markdown is one function. A new column is one Column.
Also the number formats every table uses."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence


@dataclass(frozen=True)
class Column:
    header: str
    cell: Callable[[Any], str]     # a row -> its text in this column
    numeric: bool = True           # right-aligned


@dataclass(frozen=True)
class Table:
    columns: Sequence[Column]
    rows: Sequence[Any]

    def markdown(self) -> list[str]:
        """The header line, the alignment line, a line per row."""
        return [markdown_header([c.header for c in self.columns], [c.numeric for c in self.columns])] + \
            ["| " + " | ".join(c.cell(row) for c in self.columns) + " |" for row in self.rows]


def markdown_header(headers: Iterable[str], numeric: Iterable[bool]) -> str:
    return "|" + "".join(f" {h} |" if h else " |" for h in headers) + "\n|" + \
        "".join("---:|" if n else "---|" for n in numeric)


def columns(*specs: tuple[str, Callable[[Any], str], bool]) -> list[Column]:
    return [Column(h, f, n) for h, f, n in specs]


# -- number formats --------------------------------------------------------------------------------

def num(x: float | None, digits: int = 4) -> str:
    return "—" if x is None else f"{x:.{digits}f}"


def sig(x: float | None, sig: int = 3) -> str:
    """``sig`` significant digits, thousands separated; "—" for no figure."""
    if x is None:
        return "—"
    if x == 0:
        return "0"
    digits = max(sig - int(math.floor(math.log10(abs(x)))) - 1, 0)
    return f"{x:,.{digits}f}"


def trunc(t: dict | None) -> str:
    if not t or t.get("truncated_share") is None:
        return "—"
    return f"{100 * t['truncated_share']:.1f}% at {t['max_length']}"


def share(x: float | None, digits: int = 1) -> str:
    return "—" if x is None else f"{100 * x:.{digits}f}%"


def mb(n: int | None) -> str:
    return "—" if not n else f"{n / 1e6:,.1f}"


def params(n: int | None) -> str:
    return "—" if not n else f"{n / 1e6:.1f}M"


def p_value(p: float) -> str:
    if p < 0.001:
        return f"{p:.0e}".replace("e-0", "e-")
    return f"{p:.3f}"
