"""From saved trajectories to the run's numbers, table and plot (DESIGN.md §6). No model is called here.

``compute_metrics`` reads the points of one or more runs and returns what ``metrics.json`` holds;
``render_markdown`` and ``plot_run`` draw from that dict only, so reports can be rebuilt at any time.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from trimroute._version import __version__
from trimroute.errors import DataError
from trimroute.eval import derived
from trimroute.eval import metrics as m
from trimroute.eval.matching import BUDGET_TOLERANCE, same_budget
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
    "without_timing",
    "write_results",
]

PLOT_NAME = "accuracy_cost"

CPT_TARGETS = (0.5, 0.8, 0.95)
BUDGET_SHARES = (0.1, 0.2, 0.5)  # budgeted accuracy at these shares of the strong-only cost
REFERENCES = ("weak", "strong")
MATCHED = "random:matched"
# what a run's speed and call order decide, not its trajectories: wall times and the cache's counters
TIMING_KEYS = frozenset({"wall_time_s", "wall_p50_s", "wall_p95_s", "first_step_p50_s", "calls"})
QUERY_LEVEL = ("automix", "query:")  # method names of the query-level baselines (the oracle is a bound, not one)
CURVES_NOTE = (
    "CPT, ΔIBC and APGR are read off each method's frontier: the upper concave hull of its points with "
    "weak-only, strong-only and their mixtures; reach is the highest PGR of the method's own points."
)


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


def _cpt(points: Sequence[m.Point], refs: m.References, x: float) -> float | None:
    return m.cpt(points, refs, x)


def _oracle_runs(weak: Sequence[Trajectory], strong: Sequence[Trajectory]) -> list[list[Trajectory]]:
    """The oracle query router as a curve: the k-th run sends the k cheapest weak failures that strong
    solves to strong (the upper edge of the cheapest-first band), k = 0 ... all of them."""
    by_id = {t.problem.id: t for t in strong}
    fixes = sorted(
        (t.problem.id for t in weak if not t.correct and by_id[t.problem.id].correct),
        key=lambda i: by_id[i].strong_tokens,
    )
    runs = []
    for k in range(len(fixes) + 1):
        fixed = set(fixes[:k])
        runs.append(
            [
                derived.route_whole(t, by_id[t.problem.id], t.problem.id in fixed, "oracle", weak_first=False)
                for t in weak
            ]
        )
    return runs


def _versus_best_baseline(
    curves: Mapping[str, Any],
    runs: Mapping[str, Sequence[Sequence[Trajectory]]],
    weak: Sequence[Trajectory],
    strong: Sequence[Trajectory],
    **boot: Any,
) -> dict[str, Any] | None:
    """ΔIBC of every other curve over the best query-level baseline's (the paper's "5×"), with paired
    bootstrap intervals; None without a baseline that beats mixing weak-only with strong-only."""
    baselines = {k: c["delta_ibc"] for k, c in curves.items() if k.startswith(QUERY_LEVEL) and c["delta_ibc"]}
    if not baselines:
        return None
    best = max(baselines, key=baselines.__getitem__)
    ratios = {}
    for method, c in curves.items():
        if method.startswith(QUERY_LEVEL) or method == "oracle" or c["delta_ibc"] is None:
            continue
        ci = m.bootstrap_ratio(runs[method], runs[best], weak, strong, m.delta_ibc, **boot)
        ratios[method] = {"ratio": c["delta_ibc"] / baselines[best], "ci": _ci(ci)}
    return {"baseline": best, "delta_ibc": baselines[best], "ratios": ratios}


def _budget_matches(points: Sequence[PointData], summaries: Mapping[str, m.MethodSummary], **boot: Any) -> list[Any]:
    """Each thr point beside the point nearest its budget of each random:matched family (the plain one and
    ``:keep-final``): the budgets, whether they are the same (±2 %), and the paired accuracy difference
    thr − random with its bootstrap interval."""
    out = []
    for family in sorted({p.method for p in points if p.method.startswith(MATCHED)}):
        randoms = [p for p in points if p.method == family]
        for thr in (p for p in points if p.method == "thr" and summaries[p.name].mean_strong_tokens > 0):
            target = summaries[thr.name].mean_strong_tokens
            rnd = min(randoms, key=lambda p: abs(summaries[p.name].mean_strong_tokens - target))
            achieved = summaries[rnd.name].mean_strong_tokens
            by_id = {t.problem.id: t.correct for t in rnd.trajectories}
            pairs = [(t.correct, by_id[t.problem.id]) for t in thr.trajectories]
            graded = all(a is not None and b is not None for a, b in pairs)
            diff = np.array([float(bool(a)) - float(bool(b)) for a, b in pairs])
            out.append(
                {
                    "thr": thr.name,
                    "random": rnd.name,
                    "target": target,
                    "achieved": achieved,
                    "relative_error": (achieved - target) / target,
                    "same_budget": same_budget(achieved, target),
                    "accuracy_difference": float(diff.mean()) if graded else None,
                    "accuracy_difference_ci": _ci(m.bootstrap_mean(diff, **boot)) if graded else [None, None],
                }
            )
    return out


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
    notes: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Every metric of DESIGN.md §6 for ``points`` (which must include the ``weak`` and ``strong`` points);
    ``notes`` (a run's ``config.json`` notes) says how the query-level baselines were trained."""
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
    oracle_runs = _oracle_runs(weak, strong)
    oracle_band = [list(m.summarize("oracle", run, strong_only_tokens=None).point) for run in oracle_runs]
    curves: dict[str, Any] = {}
    curve_runs: dict[str, list[Sequence[Trajectory]]] = {}
    refs = m.References(r_weak, r_strong, c_strong) if c_strong > 0 else None
    for method in dict.fromkeys(p.method for p in points):
        if method in REFERENCES or refs is None:
            continue
        members = [p for p in points if p.method == method]
        # The oracle is a curve: its cheapest-first band's upper edge, not its one all-fixes point.
        runs = curve_runs[method] = list(oracle_runs) if method == "oracle" else [p.trajectories for p in members]
        xy = [(c, a) for c, a in oracle_band] if method == "oracle" else [summaries[p.name].point for p in members]
        targets = {f"{x:.0%}": partial(_cpt, x=x) for x in CPT_TARGETS}
        cis = m.bootstrap_curve(
            runs, weak, strong, {**targets, "delta_ibc": m.delta_ibc, "apgr": m.apgr},
            n_resamples=n_resamples, seed=seed,
        )  # fmt: skip
        cpt = {}
        for key, metric in targets.items():
            tokens = metric(xy, refs)
            cpt[key] = {
                "tokens": tokens,
                "share": tokens / c_strong if tokens is not None else None,
                "tokens_ci": _ci(cis[key]),
            }
        curves[method] = {
            "points": [p.name for p in members],
            "cpt": cpt,
            "delta_ibc": m.delta_ibc(xy, refs),
            "delta_ibc_ci": _ci(cis["delta_ibc"]),
            "apgr": m.apgr(xy, refs),
            "apgr_ci": _ci(cis["apgr"]),
            "reach": m.reach(xy, refs),
            "auc": m.auc(xy, refs),
            "budgeted_accuracy": {
                f"{share:.0%}": m.budgeted_accuracy(xy, refs, share * c_strong) for share in BUDGET_SHARES
            },
        }
    return {
        "trimroute_version": __version__,
        "n_problems": len(ids),
        "references": {"r_weak": r_weak, "r_strong": r_strong, "c_strong": c_strong},
        "points": out_points,
        "curves": curves,
        "oracle_band": oracle_band,
        "budget_matches": _budget_matches(points, summaries, n_resamples=n_resamples, seed=seed),
        "versus_baseline": _versus_best_baseline(curves, curve_runs, weak, strong, n_resamples=n_resamples, seed=seed),
        "baseline_training": dict((notes or {}).get("baseline_training") or {}),
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
        lines += ["", f"| method | {heads} | ΔIBC | APGR | reach |", "| --- |" + " --- |" * (len(CPT_TARGETS) + 3)]
        for method, c in results["curves"].items():
            cells = []
            for v in c["cpt"].values():
                cell = f"{number(v['tokens'])} tok ({percent(v['share'])})" if v["tokens"] is not None else "–"
                cells.append(f"{cell} {_interval(v['tokens_ci'], number)}".strip())
            dibc = f"{number(c['delta_ibc'], 2)} {_interval(c['delta_ibc_ci'], partial(number, digits=2))}".strip()
            apgr = f"{percent(c['apgr'])} {_interval(c['apgr_ci'], percent)}".strip()
            lines.append(f"| {method} | {' | '.join(cells)} | {dibc} | {apgr} | {percent(c['reach'], 0)} |")
        lines += ["", CURVES_NOTE]
    training = results.get("baseline_training")
    if training:
        lines += ["", "Query-level baselines: " + "; ".join(f"{k} {v}" for k, v in training.items()) + "."]
    versus = results.get("versus_baseline")
    if versus and versus["ratios"]:
        cells = [
            f"{method} {v['ratio']:.2f}× {_interval(v['ci'], partial(number, digits=2))}".strip()
            for method, v in versus["ratios"].items()
        ]
        lines += [
            "",
            f"ΔIBC over the best query-level baseline ({versus['baseline']}, ΔIBC {versus['delta_ibc']:.2f}), "
            f"paired bootstrap [95% CI]: {'; '.join(cells)}.",
        ]
    if results.get("budget_matches"):
        lines += [
            "",
            f"| thr point | C̄ thr | random point | C̄ random | same budget (±{BUDGET_TOLERANCE:.0%}) | "
            "accuracy thr − random [95% CI] |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for b in results["budget_matches"]:
            diff = b["accuracy_difference"]
            cell = "–" if diff is None else f"{100 * diff:+.1f} pt {_interval(b['accuracy_difference_ci'], percent)}"
            lines.append(
                f"| `{b['thr']}` | {number(b['target'])} | `{b['random']}` | {number(b['achieved'])} "
                f"({b['relative_error']:+.1%}) | {'yes' if b['same_budget'] else 'NO'} | {cell} |"
            )
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


def without_timing(results: Any) -> Any:
    """``results`` (metrics.json) without what depends on how fast or in which order the run went (wall
    times, cache counters): two runs of the same sweep, local or on Ray, resumed or not, agree on the rest."""
    if isinstance(results, Mapping):
        return {k: without_timing(v) for k, v in results.items() if k not in TIMING_KEYS}
    if isinstance(results, list):
        return [without_timing(v) for v in results]
    return results
