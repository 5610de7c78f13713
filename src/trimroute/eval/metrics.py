"""The paper's metrics, exactly as DESIGN.md §6 defines them (paper §5, "Metrics").

A method is summarised from its trajectories (``summarize``); a method swept over a knob (threshold, λ)
is a curve of points ``(cost, accuracy)`` where cost is C̄, the mean strong tokens per problem.

Every curve metric is read off one **frontier**: the upper concave envelope of the method's points
together with the weak-only point ``(0, r_weak)`` and the strong-only point ``(C̄_strong-only,
r_strong)``. Mixing two settings per problem at random reaches any point on the segment between them,
so the hull is what the method can achieve; the weak and strong points belong to every method
because routing nothing, or sending a fraction of the problems to strong-only, needs no routing skill.
Without them a curve that stops early would be averaged over its cheap bins only (docs/eval.md).
Each method's ``reach`` (the highest PGR of its own points) is reported beside.

When ``r_strong <= r_weak`` the performance gap is empty and PGR, CPT, ΔIBC and APGR are undefined:
the functions return None rather than dividing by zero.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from trimroute.errors import ConfigError, DataError
from trimroute.types import Role, Trajectory

__all__ = [
    "ConfidenceInterval",
    "CurveMetric",
    "MethodSummary",
    "Point",
    "Price",
    "References",
    "apgr",
    "auc",
    "bootstrap_accuracy",
    "bootstrap_curve",
    "bootstrap_mean",
    "bootstrap_ratio",
    "budgeted_accuracy",
    "cpt",
    "delta_ibc",
    "frontier",
    "pgr",
    "reach",
    "summarize",
    "upper_envelope",
]

Point = tuple[float, float]  # (cost = mean strong tokens per problem, accuracy in [0, 1])
_EPS = 1e-12  # accuracies are ratios of small integers: absorb float rounding in comparisons
IBC_BINS = 100


@dataclass(frozen=True)
class Price:
    """Dollars per million tokens, as price tables quote them."""

    input_per_million: float
    output_per_million: float

    def cost(self, prompt_tokens: int, generated_tokens: int) -> float:
        return (prompt_tokens * self.input_per_million + generated_tokens * self.output_per_million) / 1e6


@dataclass(frozen=True)
class MethodSummary:
    """Per-method figures of DESIGN.md §6; token figures are means per problem."""

    method: str
    n: int
    n_graded: int
    accuracy: float | None  # over graded problems; None when none is graded
    mean_strong_tokens: float  # C̄
    strong_share: float | None  # c = ΣC / ΣC_strong-only; None without a strong-only reference
    mean_strong_prompt_tokens: float  # prefill is cheap but reported (DESIGN.md §1)
    mean_weak_tokens: float  # includes discarded proposals
    mean_discarded_tokens: float
    mean_scorer_calls: float
    mean_scorer_tokens: float  # prompt + generated
    escalations_per_problem: float
    wall_time_s: float  # summed over problems (problems run concurrently, so it exceeds elapsed time)
    cost_usd: float | None  # total for the dataset; None without prices

    @property
    def point(self) -> Point:
        if self.accuracy is None:
            raise DataError(f"method {self.method!r} has no graded trajectory, so no accuracy to plot")
        return (self.mean_strong_tokens, self.accuracy)


def summarize(
    method: str,
    trajectories: Sequence[Trajectory],
    *,
    strong_only_tokens: float | None,
    prices: Mapping[Role, Price] | None = None,
) -> MethodSummary:
    """Summarise one method; ``strong_only_tokens`` is C̄ of the strong-only run on the same problems."""
    if not trajectories:
        raise DataError(f"method {method!r} has no trajectories to summarise")
    n = len(trajectories)
    graded = [t.correct for t in trajectories if t.correct is not None]
    mean_strong = sum(t.strong_tokens for t in trajectories) / n
    if strong_only_tokens is not None and strong_only_tokens < 0:
        raise ConfigError(f"strong_only_tokens must be >= 0, got {strong_only_tokens}")
    cost = None
    if prices is not None:
        cost = sum(
            prices[role].cost(getattr(t.usage, role).prompt_tokens, getattr(t.usage, role).generated_tokens)
            for t in trajectories
            for role in prices
        )
    return MethodSummary(
        method=method,
        n=n,
        n_graded=len(graded),
        accuracy=sum(graded) / len(graded) if graded else None,
        mean_strong_tokens=mean_strong,
        strong_share=mean_strong / strong_only_tokens if strong_only_tokens else None,
        mean_strong_prompt_tokens=sum(t.usage.strong.prompt_tokens for t in trajectories) / n,
        mean_weak_tokens=sum(t.usage.weak.generated_tokens for t in trajectories) / n,
        mean_discarded_tokens=sum(t.usage.weak.discarded_tokens for t in trajectories) / n,
        mean_scorer_calls=sum(t.usage.scorer.calls for t in trajectories) / n,
        mean_scorer_tokens=sum(t.usage.scorer.prompt_tokens + t.usage.scorer.generated_tokens for t in trajectories)
        / n,
        escalations_per_problem=sum(t.escalations for t in trajectories) / n,
        wall_time_s=sum(t.wall_time_s for t in trajectories),
        cost_usd=cost,
    )


# --- curves ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class References:
    """The weak-only and strong-only results every curve metric is relative to."""

    r_weak: float
    r_strong: float
    c_strong: float  # C̄ of strong-only: mean strong tokens per problem

    def __post_init__(self) -> None:
        if not (math.isfinite(self.c_strong) and self.c_strong > 0):
            raise DataError(f"the strong-only cost must be positive, got {self.c_strong} strong tokens per problem")

    @property
    def gap(self) -> float | None:
        """r_strong − r_weak, or None when the strong model is not better (every gap metric is undefined)."""
        gap = self.r_strong - self.r_weak
        return gap if gap > _EPS else None


def _check_points(points: Sequence[Point]) -> None:
    for cost, acc in points:
        if not (math.isfinite(cost) and math.isfinite(acc)) or cost < 0:
            raise DataError(f"curve point ({cost}, {acc}) is invalid: costs must be finite and >= 0")


def upper_envelope(points: Sequence[Point]) -> list[Point]:
    """The points more accurate than every cheaper point, by increasing cost (a non-decreasing staircase)."""
    _check_points(points)
    envelope: list[Point] = []
    # At equal cost the most accurate point comes first and hides the others.
    for cost, acc in sorted(points, key=lambda p: (p[0], -p[1])):
        if not envelope or acc > envelope[-1][1] + _EPS:
            envelope.append((cost, acc))
    return envelope


def frontier(points: Sequence[Point], refs: References) -> list[Point]:
    """The method's achievable frontier: the upper concave hull of ``points`` with the weak-only and
    strong-only points, up to its most accurate point (costs and accuracies strictly increase)."""
    hull: list[Point] = []
    for p in upper_envelope([(0.0, refs.r_weak), (refs.c_strong, refs.r_strong), *points]):
        # Drop the last vertex while it lies on or below the chord from the one before it to p.
        while len(hull) >= 2 and (
            (hull[-1][0] - hull[-2][0]) * (p[1] - hull[-2][1]) - (hull[-1][1] - hull[-2][1]) * (p[0] - hull[-2][0])
            >= -_EPS
        ):
            hull.pop()
        hull.append(p)
    return hull


def _accuracy_at(front: Sequence[Point], cost: np.ndarray) -> np.ndarray:
    """Accuracy on a frontier at ``cost``: linear between vertices, flat after the last."""
    return np.interp(cost, [c for c, _ in front], [a for _, a in front])


def _cost_at(front: Sequence[Point], accuracy: np.ndarray) -> np.ndarray:
    """Least cost at which a frontier reaches ``accuracy`` (at most its last accuracy)."""
    return np.interp(accuracy, [a for _, a in front], [c for c, _ in front])


def budgeted_accuracy(points: Sequence[Point], refs: References, budget: float) -> float:
    """Accuracy reachable with a mean strong-token ``budget``, read off the frontier."""
    return float(_accuracy_at(frontier(points, refs), np.array([max(budget, 0.0)]))[0])


def pgr(r: float, r_weak: float, r_strong: float) -> float | None:
    """Performance gap recovered, (r − r_weak) / (r_strong − r_weak); None when the gap is empty."""
    gap = r_strong - r_weak
    return None if abs(gap) < _EPS else (r - r_weak) / gap


def reach(points: Sequence[Point], refs: References) -> float | None:
    """The highest PGR the method's own points attain (what it gets without mixing in strong-only)."""
    values = [pgr(acc, refs.r_weak, refs.r_strong) for _, acc in points]
    return max((v for v in values if v is not None), default=None) if refs.gap else None


def _check_fraction(x: float) -> None:
    if not 0 < x <= 1:
        raise ConfigError(f"PGR target must be a fraction in (0, 1], e.g. 0.95 for 95 %, got {x}")


def cpt(points: Sequence[Point], refs: References, x: float) -> float | None:
    """CPT(x): the least mean strong-token cost at which the frontier reaches PGR = ``x`` (a fraction).

    None when the strong model is not better than the weak one. Divide by C̄_strong-only for the share c.
    """
    _check_fraction(x)
    if refs.gap is None:
        return None
    return float(_cost_at(frontier(points, refs), np.array([refs.r_weak + x * refs.gap]))[0])


def delta_ibc(points: Sequence[Point], refs: References) -> float | None:
    """ΔIBC averaged over 100 equal-width performance bins between r_weak and r_strong.

    In each bin (at its centre r_b) the frontier's least cost C(r_b) gives IBC = (r_b − r_weak) / C(r_b),
    compared with the strong-only IBC_base = (r_strong − r_weak) / C̄_strong-only. The frontier reaches
    every bin; bins it reaches at zero cost (IBC infinite, only when a point is free and better than
    weak-only) are left out; None if no bin is left.
    """
    if refs.gap is None:
        return None
    gains = refs.gap * (np.arange(IBC_BINS) + 0.5) / IBC_BINS
    costs = _cost_at(frontier(points, refs), refs.r_weak + gains)
    paid = costs > _EPS
    if not paid.any():
        return None
    ibc_base = refs.gap / refs.c_strong
    return float(np.mean((gains[paid] / costs[paid] - ibc_base) / ibc_base))


def _mean_over_share(front: Sequence[Point], c_strong: float) -> float:
    """Mean of the frontier's accuracy over cost shares c in [0, 1] (exact: it is piecewise linear)."""
    xs = np.array(sorted({0.0, c_strong, *(c for c, _ in front if c < c_strong)}))
    return float(np.trapezoid(_accuracy_at(front, xs), xs) / c_strong)


def apgr(points: Sequence[Point], refs: References) -> float | None:
    """Average PGR over cost shares c in [0, 1] (RouteLLM's APGR), on the frontier."""
    if refs.gap is None:
        return None
    return (_mean_over_share(frontier(points, refs), refs.c_strong) - refs.r_weak) / refs.gap


def auc(points: Sequence[Point], refs: References) -> float:
    """Area under the frontier's accuracy vs cost-share curve, c in [0, 1] (the mean accuracy over shares)."""
    return _mean_over_share(frontier(points, refs), refs.c_strong)


# --- bootstrap over problems ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ConfidenceInterval:
    """A percentile bootstrap interval; a bound is None where resamples never reached a value (CPT)."""

    low: float | None
    high: float | None
    level: float
    n_resamples: int


def _check_bootstrap(n_resamples: int, level: float) -> None:
    if n_resamples < 1:
        raise ConfigError(f"n_resamples must be >= 1, got {n_resamples}")
    if not 0 < level < 1:
        raise ConfigError(f"confidence level must be in (0, 1), e.g. 0.95, got {level}")


def _outcomes(trajectories: Sequence[Trajectory], ids: Sequence[str], what: str) -> tuple[np.ndarray, np.ndarray]:
    """(correct, strong tokens) arrays aligned with ``ids``."""
    by_id = {t.problem.id: t for t in trajectories}
    missing = [i for i in ids if i not in by_id]
    if missing or len(by_id) != len(ids):
        raise DataError(
            f"{what} does not cover the same problems as the others "
            f"(e.g. {missing[:3] or sorted(set(by_id) - set(ids))[:3]})"
        )
    if any(by_id[i].correct is None for i in ids):
        raise DataError(f"{what} has ungraded trajectories; grade them first (trim grade RUN)")
    return (
        np.array([bool(by_id[i].correct) for i in ids], dtype=float),
        np.array([by_id[i].strong_tokens for i in ids], dtype=float),
    )


def _percentile_interval(values: np.ndarray, level: float, n: int) -> ConfidenceInterval:
    """Percentile interval; +inf stands for 'undefined' and maps to a None bound."""
    tail = (1 - level) / 2 * 100
    # inverted_cdf picks actual resample values: no interpolation between a finite cost and infinity.
    low, high = (float(v) for v in np.percentile(values, [tail, 100 - tail], method="inverted_cdf"))
    return ConfidenceInterval(low if math.isfinite(low) else None, high if math.isfinite(high) else None, level, n)


def bootstrap_accuracy(
    trajectories: Sequence[Trajectory], *, n_resamples: int = 1000, seed: int = 0, level: float = 0.95
) -> ConfidenceInterval:
    """Bootstrap interval for accuracy, resampling problems with replacement."""
    if not trajectories:
        raise DataError("no trajectories to bootstrap")
    correct, _ = _outcomes(trajectories, [t.problem.id for t in trajectories], "the run")
    return bootstrap_mean(correct, n_resamples=n_resamples, seed=seed, level=level)


def bootstrap_mean(
    values: np.ndarray, *, n_resamples: int = 1000, seed: int = 0, level: float = 0.95
) -> ConfidenceInterval:
    """Bootstrap interval for the mean of per-problem ``values`` (e.g. strong tokens), problems resampled."""
    _check_bootstrap(n_resamples, level)
    idx = np.random.default_rng(seed).integers(0, len(values), size=(n_resamples, len(values)))
    return _percentile_interval(values[idx].mean(axis=1), level, n_resamples)


CurveMetric = Callable[[Sequence[Point], References], float | None]


def _resampled(
    curves: Sequence[Sequence[Sequence[Trajectory]]],
    weak: Sequence[Trajectory],
    strong: Sequence[Trajectory],
    metrics: Mapping[str, CurveMetric],
    n_resamples: int,
    seed: int,
) -> dict[str, np.ndarray]:
    """Each metric of every curve on the same bootstrap draws of problems, shape (n_resamples, curves).

    Each draw recomputes every run and the weak/strong references on it (a paired bootstrap); where
    the metric is undefined (strong not better than weak, or no strong tokens) the value is +inf.
    """
    if not weak:
        raise DataError("no weak-only trajectories to bootstrap against")
    ids = [t.problem.id for t in weak]
    weak_correct, _ = _outcomes(weak, ids, "the weak-only run")
    strong_correct, strong_tokens = _outcomes(strong, ids, "the strong-only run")
    idx = np.random.default_rng(seed).integers(0, len(ids), size=(n_resamples, len(ids)))
    r_weak, r_strong = weak_correct[idx].mean(axis=1), strong_correct[idx].mean(axis=1)
    c_strong = strong_tokens[idx].mean(axis=1)
    values = {name: np.full((n_resamples, len(curves)), math.inf) for name in metrics}
    for j, curve in enumerate(curves):
        runs = [_outcomes(run, ids, f"curve run {k}") for k, run in enumerate(curve)]
        accs = np.stack([c[idx].mean(axis=1) for c, _ in runs], axis=1) if runs else np.empty((n_resamples, 0))
        costs = np.stack([t[idx].mean(axis=1) for _, t in runs], axis=1) if runs else np.empty((n_resamples, 0))
        for b in range(n_resamples):
            if c_strong[b] <= 0:
                continue
            points = list(zip(costs[b].tolist(), accs[b].tolist(), strict=True))
            refs = References(float(r_weak[b]), float(r_strong[b]), float(c_strong[b]))
            for name, metric in metrics.items():
                value = metric(points, refs)
                if value is not None:
                    values[name][b, j] = value
    return values


def bootstrap_curve(
    curve: Sequence[Sequence[Trajectory]],
    weak: Sequence[Trajectory],
    strong: Sequence[Trajectory],
    metrics: Mapping[str, CurveMetric],
    *,
    n_resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, ConfidenceInterval]:
    """Bootstrap intervals for curve metrics (CPT, ΔIBC, APGR, ...), one per entry of ``metrics``.

    Problems are resampled and every run of the curve and both references recomputed on the same
    draw. A resample where a metric is undefined counts as +inf, so the high bound is None when that
    happens in more than the upper tail.
    """
    _check_bootstrap(n_resamples, level)
    values = _resampled([curve], weak, strong, metrics, n_resamples, seed)
    return {name: _percentile_interval(v[:, 0], level, n_resamples) for name, v in values.items()}


def bootstrap_ratio(
    numerator: Sequence[Sequence[Trajectory]],
    denominator: Sequence[Sequence[Trajectory]],
    weak: Sequence[Trajectory],
    strong: Sequence[Trajectory],
    metric: CurveMetric,
    *,
    n_resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> ConfidenceInterval:
    """Paired bootstrap interval for metric(numerator curve) / metric(denominator curve), e.g. the
    paper's "5× more cost-efficient" ΔIBC ratio: both curves are recomputed on the same draws. A draw
    where either value is undefined or the denominator is not positive counts as +inf."""
    _check_bootstrap(n_resamples, level)
    values = _resampled([numerator, denominator], weak, strong, {"metric": metric}, n_resamples, seed)["metric"]
    top, bottom = values[:, 0], values[:, 1]
    defined = np.isfinite(top) & np.isfinite(bottom) & (bottom > 0)
    ratio = np.divide(top, bottom, out=np.full(n_resamples, math.inf), where=defined)
    return _percentile_interval(ratio, level, n_resamples)
