"""Accuracy vs cost plots (the paper's Figure 3 style), drawn from saved numbers only.

Uses matplotlib's object API with the Agg canvas (no pyplot, no global backend switch), so plotting
is safe from any thread and never needs a display.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path

import numpy as np

from trimroute.errors import DataError
from trimroute.eval.metrics import Point, upper_envelope

__all__ = ["plot_curves"]

FORMATS = ("png", "svg")


def plot_curves(
    curves: Mapping[str, Sequence[Point]],
    out: str | Path,
    *,
    r_weak: float | None = None,
    r_strong: float | None = None,
    c_strong: float | None = None,
    oracle: Sequence[Point] | None = None,
    title: str | None = None,
) -> list[Path]:
    """Plot accuracy vs mean strong tokens per problem; write ``out`` as PNG and SVG and return the paths.

    ``curves`` maps a method name to its (cost, accuracy) points: a line follows each curve's upper
    envelope, markers show every point. ``r_weak``/``r_strong`` draw reference lines, ``c_strong``
    adds the strong-only share axis on top, ``oracle`` (the oracle query router's curve) is shaded
    down to the weak accuracy as the band no query-level router can leave.
    """
    if not curves:
        raise DataError("nothing to plot: no method has points")
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # matplotlib loads only when plotting
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.0, 4.8), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    if oracle:
        env = upper_envelope(oracle)
        # Past its last point the oracle keeps its accuracy: extend the band to the right edge of the plot.
        right = max(c for points in (oracle, *curves.values()) for c, _ in points)
        xs, ys = [c for c, _ in env] + [right], [a for _, a in env] + [env[-1][1]]
        floor = min(ys) if r_weak is None else r_weak
        ax.fill_between(xs, ys, floor, color="0.85", label="oracle query router")
    for name, points in curves.items():
        if not points:
            raise DataError(f"method {name!r} has no points to plot")
        env = upper_envelope(points)
        (line,) = ax.plot([c for c, _ in env], [a for _, a in env], marker="o", markersize=4, label=name)
        ax.scatter([c for c, _ in points], [a for _, a in points], s=12, alpha=0.35, color=line.get_color())
    if r_weak is not None:
        ax.axhline(r_weak, color="tab:gray", linestyle="--", linewidth=1, label=f"weak only ({r_weak:.1%})")
    if r_strong is not None:
        ax.axhline(r_strong, color="black", linestyle="--", linewidth=1, label=f"strong only ({r_strong:.1%})")
    ax.set_xlabel("mean strong tokens per problem (C̄)")
    ax.set_ylabel("accuracy")
    ax.yaxis.set_major_formatter(lambda y, _: f"{y:.0%}")
    ax.set_xlim(left=0)
    ax.grid(alpha=0.3)
    if c_strong:
        to_share = 100 / c_strong
        top = ax.secondary_xaxis("top", functions=(partial(np.multiply, to_share), partial(np.multiply, 1 / to_share)))
        top.set_xlabel("share of strong-only tokens (%)")
    if title:
        ax.set_title(title)
    ax.legend(fontsize="small", loc="lower right")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    paths = [out.with_suffix(f".{fmt}") for fmt in FORMATS]
    for path in paths:
        fig.savefig(path, dpi=150)
    return paths
