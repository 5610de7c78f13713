"""From saved trajectories to the run's numbers, table and plot (DESIGN.md §6). No model is called here.

``compute_metrics`` reads the points of one or more runs and returns what ``metrics.json`` holds;
``render_markdown`` and ``plot_run`` draw from that dict only, so reports can be rebuilt at any time.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from trimroute._version import __version__
from trimroute.errors import DataError
from trimroute.eval import metrics as m
from trimroute.eval.plots import plot_curves
from trimroute.eval.rundir import write_json
from trimroute.types import ROLES, Role, Trajectory

__all__ = [
    "PLOT_NAME",
    "PointData",
    "calls_line",
    "compute_metrics",
    "number",
    "percent",
    "plot_run",
    "render_markdown",
    "write_results",
]

PLOT_NAME = "accuracy_cost"

CPT_TARGETS = (0.5, 0.8, 0.95)
BUDGET_SHARES = (0.1, 0.2, 0.5)  # budgeted accuracy at these shares of the strong-only cost
REFERENCES = ("weak", "strong")


@dataclass(frozen=True)
class PointData:
    """One point of a method's curve with its trajectories."""

    name: str
    method: str
    trajectories: Sequence[Trajectory]


def _reference(points: Sequence[PointData], name: str) -> PointData:
    for p in points:
        if p.method == name and p.name == name:
            return p
    raise DataError(f"no {name}-only results: every report needs the weak-only and strong-only runs")


def _ci(ci: m.ConfidenceInterval) -> list[float | None]:
    return [ci.low, ci.high]


def _oracle_band(weak: Sequence[Trajectory], strong: Sequence[Trajectory]) -> list[list[float]]:
    """The oracle query router at every budget: fix the weak failures that strong solves, cheapest first."""
    by_id = {t.problem.id: t for t in strong}
    n = len(weak)
    fixes = sorted(by_id[t.problem.id].strong_tokens for t in weak if not t.correct and by_id[t.problem.id].correct)
    right = sum(bool(t.correct) for t in weak)
    band, spent = [[0.0, right / n]], 0
    for k, tokens in enumerate(fixes, 1):
        spent += tokens
        band.append([spent / n, (right + k) / n])  # exact ratios: the last point is the oracle's accuracy
    return band


def _wall_times(trajectories: Sequence[Trajectory]) -> dict[str, float | None]:
    """Wall time per problem (p50, p95) and time to the first accepted step (p50), in seconds. A point
    assembled from other runs (query routers) reports its source trajectories' times."""

    def q(values: Sequence[float], percent: float) -> float | None:
        return float(np.percentile(values, percent)) if values else None

    wall = [t.wall_time_s for t in trajectories]
    first = [t.timing["first_step_s"] for t in trajectories if "first_step_s" in t.timing]
    return {"wall_p50_s": q(wall, 50), "wall_p95_s": q(wall, 95), "first_step_p50_s": q(first, 50)}


def _calls(points: Sequence[PointData], cache: Mapping[str, Mapping[str, Mapping[str, int]]]) -> dict[str, Any]:
    """Model calls made (cache misses) against calls requested, and against every point run alone."""
    alone = {r: sum(getattr(t.usage, r).calls for p in points for t in p.trajectories) for r in ROLES}
    made = {r: sum(c.get(r, {}).get("misses", 0) for c in cache.values()) for r in ROLES}
    requested = {r: sum(c.get(r, {}).get("requests", 0) for c in cache.values()) for r in ROLES}
    total_made = sum(made.values())
    return {
        "made": made,
        "requested": requested,
        "alone": alone,
        "saving": (sum(alone.values()) / total_made) if total_made else None,
        "per_method": {k: dict(v) for k, v in cache.items()},
    }


def compute_metrics(
    points: Sequence[PointData],
    *,
    prices: Mapping[Role, m.Price] | None = None,
    cache_calls: Mapping[str, Mapping[str, Mapping[str, int]]] | None = None,
    n_resamples: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Every metric of DESIGN.md §6 for ``points`` (which must include the ``weak`` and ``strong`` points)."""
    weak, strong = _reference(points, "weak").trajectories, _reference(points, "strong").trajectories
    ids = sorted(t.problem.id for t in weak)
    for p in points:
        if sorted(t.problem.id for t in p.trajectories) != ids:
            raise DataError(
                f"point {p.name!r} covers {len(p.trajectories)} problems, the weak-only run {len(ids)}: "
                "finish the run first (rerun trim eval with the same --out)"
            )
    c_strong = m.summarize("strong", strong, strong_only_tokens=None).mean_strong_tokens
    summaries = {
        p.name: m.summarize(p.name, p.trajectories, strong_only_tokens=c_strong, prices=prices) for p in points
    }
    r_weak, r_strong = summaries["weak"].accuracy, summaries["strong"].accuracy
    if r_weak is None or r_strong is None:
        raise DataError("the weak-only and strong-only results are not graded; run trim grade RUN")
    out_points = {}
    for p in points:
        s = summaries[p.name]
        out_points[p.name] = {
            **dataclasses.asdict(s),
            "method": p.method,
            "pgr": m.pgr(s.accuracy, r_weak, r_strong) if s.accuracy is not None else None,
            "accuracy_ci": _ci(m.bootstrap_accuracy(p.trajectories, n_resamples=n_resamples, seed=seed)),
            **_wall_times(p.trajectories),
        }
    curves: dict[str, Any] = {}
    for method in dict.fromkeys(p.method for p in points):
        if method in REFERENCES:
            continue
        members = [p for p in points if p.method == method]
        xy = [summaries[p.name].point for p in members]
        cpt = {}
        for x in CPT_TARGETS:
            tokens = m.cpt(xy, r_weak, r_strong, x)
            ci = m.bootstrap_cpt([p.trajectories for p in members], weak, strong, x, n_resamples=n_resamples, seed=seed)
            cpt[f"{x:.0%}"] = {
                "tokens": tokens,
                "share": tokens / c_strong if tokens is not None and c_strong else None,
                "tokens_ci": _ci(ci),
            }
        curves[method] = {
            "points": [p.name for p in members],
            "cpt": cpt,
            "delta_ibc": m.delta_ibc(xy, r_weak, r_strong, c_strong) if c_strong else None,
            "apgr": m.apgr(xy, r_weak, r_strong, c_strong) if c_strong else None,
            "auc": m.auc(xy, r_weak, c_strong) if c_strong else None,
            "budgeted_accuracy": {
                f"{share:.0%}": m.budgeted_accuracy([(0.0, r_weak), *xy], share * c_strong) for share in BUDGET_SHARES
            },
        }
    return {
        "trimroute_version": __version__,
        "n_problems": len(ids),
        "references": {"r_weak": r_weak, "r_strong": r_strong, "c_strong": c_strong},
        "points": out_points,
        "curves": curves,
        "oracle_band": _oracle_band(weak, strong),
        "calls": _calls(points, cache_calls or {}),
    }


# --- rendering -----------------------------------------------------------------------------------------


def percent(x: float | None, digits: int = 1) -> str:
    return "–" if x is None or not math.isfinite(x) else f"{100 * x:.{digits}f}%"


def number(x: float | None, digits: int = 1) -> str:
    return "–" if x is None or not math.isfinite(x) else f"{x:,.{digits}f}"


def _interval(ci: Sequence[float | None], fmt: Any) -> str:
    low, high = ci
    return f"[{fmt(low)}, {fmt(high)}]" if low is not None or high is not None else ""


def render_markdown(results: Mapping[str, Any], title: str = "trim eval") -> str:
    """The run's tables as Markdown: one row per point, one per curve, and the model-call summary."""
    ref = results["references"]
    lines = [
        f"# {title}",
        "",
        f"{results['n_problems']} problems · weak {percent(ref['r_weak'])} · strong {percent(ref['r_strong'])} · "
        f"strong-only {number(ref['c_strong'])} strong tokens per problem",
        "",
        "| method | point | accuracy [95% CI] | PGR | C̄ (strong tok/problem) | c (share) | weak tok | discarded | "
        "escalations | scorer calls | wall p50 / p95 (s) | $ |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, p in results["points"].items():
        usd = "–" if p["cost_usd"] is None else f"{p['cost_usd']:.4f}"
        lines.append(
            f"| {p['method']} | `{name}` | {percent(p['accuracy'])} {_interval(p['accuracy_ci'], percent)} | "
            f"{percent(p['pgr'], 0)} | {number(p['mean_strong_tokens'])} | {percent(p['strong_share'])} | "
            f"{number(p['mean_weak_tokens'])} | {number(p['mean_discarded_tokens'])} | "
            f"{number(p['escalations_per_problem'], 2)} | {number(p['mean_scorer_calls'], 1)} | "
            f"{number(p.get('wall_p50_s'), 2)} / {number(p.get('wall_p95_s'), 2)} | {usd} |"
        )
    if results["curves"]:
        heads = " | ".join(f"CPT({k})" for k in next(iter(results["curves"].values()))["cpt"])
        lines += ["", f"| method | {heads} | ΔIBC | APGR |", "| --- |" + " --- |" * (len(CPT_TARGETS) + 2)]
        for method, c in results["curves"].items():
            cells = []
            for v in c["cpt"].values():
                reached = v["tokens"] is not None
                cell = f"{number(v['tokens'])} tok ({percent(v['share'])})" if reached else "not reached"
                cells.append(f"{cell} {_interval(v['tokens_ci'], number)}".strip())
            lines.append(f"| {method} | {' | '.join(cells)} | {number(c['delta_ibc'], 2)} | {percent(c['apgr'])} |")
    line = calls_line(results)
    if line is not None:
        lines += ["", line]
    return "\n".join(lines) + "\n"


def calls_line(results: Mapping[str, Any]) -> str | None:
    """One sentence on the call cache's saving, or None when no call went through the cache."""
    calls = results["calls"]
    made, alone = sum(calls["made"].values()), sum(calls["alone"].values())
    if not made:
        return None
    return (
        f"Model calls: {made:,} made (cache misses) for {sum(calls['requested'].values()):,} requested; "
        f"running every point alone would make {alone:,} ({calls['saving']:.1f}× more)."
    )


def plot_run(results: Mapping[str, Any], out: str | Path, title: str | None = None) -> list[Path]:
    """The accuracy–cost plot: one curve per method, weak/strong lines, the oracle band."""
    pts = results["points"]
    curves = {
        method: [(pts[n]["mean_strong_tokens"], pts[n]["accuracy"]) for n in c["points"]]
        for method, c in results["curves"].items()
        if method != "oracle"
    }
    ref = results["references"]
    if not curves:  # only the references were run: draw the straight line between them
        curves = {"weak → strong": [(0.0, ref["r_weak"]), (ref["c_strong"], ref["r_strong"])]}
    return plot_curves(
        curves,
        out,
        r_weak=ref["r_weak"],
        r_strong=ref["r_strong"],
        c_strong=ref["c_strong"] or None,
        oracle=[tuple(p) for p in results["oracle_band"]],
        title=title,
    )


def write_results(out: Path, results: Mapping[str, Any], title: str) -> None:
    """``metrics.json``, ``report.md`` and the accuracy–cost plot of ``results`` into folder ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "metrics.json", results)
    (out / "report.md").write_text(render_markdown(results, title), encoding="utf-8")
    plot_run(results, out / PLOT_NAME, title=title)
