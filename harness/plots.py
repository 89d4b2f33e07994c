"""Efficiency-effectiveness Pareto plots: a suite's first measure against median per-query latency.

One plot per (suite, dataset): x is the p50 latency of one query through the whole pipeline (log
scale), y the dataset's first measure, each marker's area proportional to the ranker's size on
disk (model plus index), labelled with the ranker's letter in the report's table. The frontier
(the rankers no other ranker beats on both axes) is drawn as a step line. Written as PNG and SVG
beside the report; ``frontier`` is also what the report's markdown lists, so a stale plot shows
up in ``rankbench report --check`` as a stale table.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Point:
    letter: str
    ranker: str
    latency_ms: float
    value: float
    size_bytes: int


SANITY_KINDS = ("oracle", "random")     # bounds, not rankers anyone ships: kept off the frontier


def points(cells, letters: dict[str, str], measure: str) -> tuple[list[Point], list[str], list[str]]:
    """The plottable rankers of one dataset, those without a latency measured here (a precomputed
    run, or latency timing turned off) and the sanity rows (oracle, random), which are left out."""
    out, left, sanity = [], [], []
    for r, c in cells:
        e = c["efficiency"]
        lat = (e.get("latency_ms") or {}).get("p50")
        if (c.get("ranker_config") or {}).get("kind") in SANITY_KINDS:
            sanity.append(r)
            continue
        if e.get("precomputed") or not lat:
            left.append(r)
            continue
        size = int(e.get("model_bytes") or 0) + int(e.get("index_bytes") or 0)
        out.append(Point(letters[r], r, float(lat), float(c["measures"]["aggregate"][measure]), size))
    return out, left, sanity


def frontier(pts: list[Point]) -> list[Point]:
    """The Pareto frontier: sorted by latency, each point strictly better than every faster one
    (ties in latency keep the more effective)."""
    best, out = float("-inf"), []
    for p in sorted(pts, key=lambda p: (p.latency_ms, -p.value)):
        if p.value > best + 1e-12:
            out.append(p)
            best = p.value
    return out


def plot_problem(path: Path) -> str | None:
    """Why a plot file cannot be trusted (missing, empty, or not a whole PNG / SVG), or None."""
    import io
    import xml.etree.ElementTree as ET

    if not path.exists():
        return "missing"
    data = path.read_bytes()
    if not data:
        return "empty"
    if path.suffix == ".png":
        if not data.startswith(b"\x89PNG\r\n\x1a\n") or not data.endswith(b"IEND\xaeB`\x82"):
            return "not a whole PNG"
        try:
            from PIL import Image

            with Image.open(io.BytesIO(data)) as im:
                im.load()
        except ImportError:
            pass
        except Exception as e:   # PIL raises many kinds for a damaged image
            return f"not a readable PNG: {e}"
        return None
    try:
        root = ET.fromstring(data)
    except ET.ParseError as e:
        return f"not valid SVG XML: {e}"
    if not root.tag.endswith("svg"):
        return f"not an SVG document (root element {root.tag!r})"
    return None


def plot(pts: list[Point], title: str, measure: str, path_stem: Path) -> tuple[Path, Path]:
    """Draw the plot; write ``<stem>.png`` and ``<stem>.svg`` atomically (a killed run never
    leaves half a plot). Deterministic bytes for the same inputs and matplotlib version (no
    dates, fixed SVG ids)."""
    import io

    from .files import atomic_write_bytes
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    if not pts:
        raise ValueError(f"{title}: no ranker with a measured latency to plot")
    front = frontier(pts)
    on_front = {p.ranker for p in front}
    sizes = [p.size_bytes for p in pts]
    biggest = max(sizes) or 1
    with plt.rc_context({"svg.hashsalt": "rankbench", "font.size": 9}):
        fig, ax = plt.subplots(figsize=(9, 5.2), dpi=110)
        for i, p in enumerate(sorted(pts, key=lambda p: (-p.size_bytes, p.letter))):   # small ones on top
            area = 30 + 900 * (p.size_bytes / biggest)
            ax.scatter(p.latency_ms, p.value, s=area, alpha=0.55,
                       color="tab:red" if p.ranker in on_front else "tab:blue",
                       edgecolors="black", linewidths=0.6, zorder=3 + i / 100)
        placed: list[Point] = []
        span = (max(p.value for p in pts) - min(p.value for p in pts)) or 1.0
        for p in sorted(pts, key=lambda p: p.letter):
            # points that (nearly) coincide get their letters stacked, not printed over each other
            near = sum(1 for o in placed if abs(math.log10(o.latency_ms / p.latency_ms)) < 0.08
                       and abs(o.value - p.value) < 0.03 * span)
            placed.append(p)
            ax.annotate(p.letter, (p.latency_ms, p.value), textcoords="offset points", xytext=(6, 4 - 11 * near),
                        fontsize=10, fontweight="bold", zorder=4)
        xs = [p.latency_ms for p in front]
        ys = [p.value for p in front]
        ax.step(xs, ys, where="post", color="tab:red", linewidth=1.2, zorder=2)
        ax.set_xscale("log")
        ax.set_xlabel("median latency per query, ms (log scale; one query through the whole pipeline)")
        ax.set_ylabel(measure)
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        lo, hi = min(p.latency_ms for p in pts), max(p.latency_ms for p in pts)
        ax.set_xlim(lo / 1.8, hi * 1.8)
        handles = [Line2D([], [], linestyle="none", marker="o", markersize=6,
                          color="tab:red" if p.ranker in on_front else "tab:blue",
                          label=f"{p.letter}  {p.ranker}") for p in sorted(pts, key=lambda p: p.letter)]
        handles.append(Line2D([], [], color="tab:red", label="Pareto frontier"))
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False,
                  title=f"area: size on disk (largest {biggest / 1e6:,.0f} MB)", title_fontsize=8)
        fig.tight_layout()
        png, svg = path_stem.with_suffix(".png"), path_stem.with_suffix(".svg")
        for path, fmt, meta in ((png, "png", {"Software": None}), (svg, "svg", {"Date": None, "Creator": None})):
            buf = io.BytesIO()
            fig.savefig(buf, format=fmt, metadata=meta)
            atomic_write_bytes(path, buf.getvalue())
        plt.close(fig)
    return png, svg
