"""The paper's metrics, exactly as DESIGN.md §6 defines them (paper §5, "Metrics").

A method is summarised from its trajectories (``summarize``); a method swept over a knob (threshold, λ)
is a curve of points ``(cost, accuracy)`` where cost is C̄, the mean strong tokens per problem.

Curves are read along their **upper envelope**: the points that are more accurate than every cheaper
point, joined linearly (mixing two settings at random achieves any point on the segment). Every
routing curve implicitly starts at the weak-only point ``(0, r_weak)``: routing nothing costs nothing.

When ``r_strong == r_weak`` the performance gap is empty and PGR, CPT, ΔIBC and APGR are undefined:
the functions return None rather than dividing by zero.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from trimroute.errors import ConfigError, DataError
from trimroute.types import Role, Trajectory

__all__ = [
    "ConfidenceInterval",
    "MethodSummary",
    "Point",
    "Price",
    "apgr",
    "auc",
    "bootstrap_accuracy",
    "bootstrap_mean",
    "bootstrap_cpt",
    "budgeted_accuracy",
    "cpt",
    "delta_ibc",
    "pgr",
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


def upper_envelope(points: Sequence[Point]) -> list[Point]:
    """The points more accurate than every cheaper point, by increasing cost (a non-decreasing staircase)."""
    for cost, acc in points:
        if not (math.isfinite(cost) and math.isfinite(acc)) or cost < 0:
            raise DataError(f"curve point ({cost}, {acc}) is invalid: costs must be finite and >= 0")
    envelope: list[Point] = []
    # At equal cost the most accurate point comes first and hides the others.
    for cost, acc in sorted(points, key=lambda p: (p[0], -p[1])):
        if not envelope or acc > envelope[-1][1] + _EPS:
            envelope.append((cost, acc))
    return envelope


def _with_weak(points: Sequence[Point], r_weak: float) -> list[Point]:
    return upper_envelope([(0.0, r_weak), *points])


def _interpolate(envelope: Sequence[Point], cost: float) -> float:
    """Accuracy on an envelope at ``cost`` >= its first cost: linear between points, flat after the last."""
    for (c0, a0), (c1, a1) in zip(envelope, envelope[1:], strict=False):
        if cost <= c1:  # envelope costs strictly increase, so c1 > c0
            return a0 + (a1 - a0) * (cost - c0) / (c1 - c0)
    return envelope[-1][1]


def _cost_for(envelope: Sequence[Point], accuracy: float) -> float | None:
    """Least cost at which an envelope reaches ``accuracy``; None if it never does."""
    if not envelope or envelope[-1][1] < accuracy - _EPS:
        return None
    if envelope[0][1] >= accuracy - _EPS:
        return envelope[0][0]
    for (c0, a0), (c1, a1) in zip(envelope, envelope[1:], strict=False):
        if a1 >= accuracy - _EPS:
            return c0 + (c1 - c0) * (accuracy - a0) / (a1 - a0)
    raise AssertionError("unreachable: the last point reaches the accuracy")


def budgeted_accuracy(points: Sequence[Point], budget: float) -> float | None:
    """Accuracy reachable with a mean strong-token budget, read off the upper envelope of ``points``.

    None when even the cheapest point costs more than ``budget``.
    """
    envelope = upper_envelope(points)
    if not envelope or budget < envelope[0][0] - _EPS:
        return None
    return _interpolate(envelope, budget)


def pgr(r: float, r_weak: float, r_strong: float) -> float | None:
    """Performance gap recovered, (r − r_weak) / (r_strong − r_weak); None when the gap is empty."""
    gap = r_strong - r_weak
    return None if abs(gap) < _EPS else (r - r_weak) / gap


def _check_fraction(x: float) -> None:
    if not 0 < x <= 1:
        raise ConfigError(f"PGR target must be a fraction in (0, 1], e.g. 0.95 for 95 %, got {x}")


def cpt(points: Sequence[Point], r_weak: float, r_strong: float, x: float) -> float | None:
    """CPT(x): the least mean strong-token cost at which the curve reaches PGR = ``x`` (a fraction).

    None when the curve never gets there, or when the strong model is not better than the weak one.
    Divide by C̄_strong-only for the share c.
    """
    _check_fraction(x)
    if r_strong - r_weak < _EPS:
        return None
    return _cost_for(_with_weak(points, r_weak), r_weak + x * (r_strong - r_weak))


def delta_ibc(points: Sequence[Point], r_weak: float, r_strong: float, c_strong: float) -> float | None:
    """ΔIBC averaged over 100 equal-width performance bins between r_weak and r_strong.

    In each bin (at its centre r_b) the curve's least cost C(r_b) gives IBC = (r_b − r_weak) / C(r_b),
    compared with the strong-only IBC_base = (r_strong − r_weak) / C̄_strong-only. Bins the curve never
    reaches, and bins it reaches at zero cost (IBC infinite), are left out; None if no bin is left.
    """
    gap = r_strong - r_weak
    if gap < _EPS:
        return None
    if c_strong <= 0:
        raise ConfigError(f"strong-only cost must be positive, got {c_strong}")
    envelope = _with_weak(points, r_weak)
    ibc_base = gap / c_strong
    deltas = []
    for b in range(IBC_BINS):
        r_b = r_weak + gap * (b + 0.5) / IBC_BINS
        cost = _cost_for(envelope, r_b)
        if cost is not None and cost > _EPS:
            deltas.append(((r_b - r_weak) / cost - ibc_base) / ibc_base)
    return float(np.mean(deltas)) if deltas else None


def _mean_over_share(envelope: Sequence[Point], c_strong: float) -> float:
    """Mean of the envelope's accuracy over cost shares c in [0, 1] (exact: the envelope is piecewise linear)."""
    if c_strong <= 0:
        raise ConfigError(f"strong-only cost must be positive, got {c_strong}")
    xs = sorted({0.0, c_strong, *(c for c, _ in envelope if c < c_strong)})
    ys = [_interpolate(envelope, x) for x in xs]
    area = sum((xs[i + 1] - xs[i]) * (ys[i] + ys[i + 1]) / 2 for i in range(len(xs) - 1))
    return area / c_strong


def apgr(points: Sequence[Point], r_weak: float, r_strong: float, c_strong: float) -> float | None:
    """Average PGR over cost shares c in [0, 1] (RouteLLM's APGR); None when the gap is empty."""
    gap = r_strong - r_weak
    if abs(gap) < _EPS:
        return None
    return (_mean_over_share(_with_weak(points, r_weak), c_strong) - r_weak) / gap


def auc(points: Sequence[Point], r_weak: float, c_strong: float) -> float:
    """Area under the accuracy vs cost-share curve, c in [0, 1] (the mean accuracy over shares)."""
    return _mean_over_share(_with_weak(points, r_weak), c_strong)


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
    """Percentile interval; +inf stands for 'not reached' and maps to a None bound."""
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


def bootstrap_cpt(
    curve: Sequence[Sequence[Trajectory]],
    weak: Sequence[Trajectory],
    strong: Sequence[Trajectory],
    x: float,
    *,
    n_resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> ConfidenceInterval:
    """Bootstrap interval for CPT(x): each resample draws problems and recomputes every run of the curve
    and the weak/strong references on the same draw (a paired bootstrap). A resample where the curve never
    reaches x (or where strong is not better than weak) counts as infinite cost, so the high bound is None
    when that happens in more than the upper tail.
    """
    _check_fraction(x)
    _check_bootstrap(n_resamples, level)
    if not weak:
        raise DataError("no weak-only trajectories to bootstrap against")
    ids = [t.problem.id for t in weak]
    weak_correct, _ = _outcomes(weak, ids, "the weak-only run")
    strong_correct, _ = _outcomes(strong, ids, "the strong-only run")
    runs = [_outcomes(run, ids, f"curve run {k}") for k, run in enumerate(curve)]
    idx = np.random.default_rng(seed).integers(0, len(ids), size=(n_resamples, len(ids)))
    r_weak, r_strong = weak_correct[idx].mean(axis=1), strong_correct[idx].mean(axis=1)
    accs = np.stack([c[idx].mean(axis=1) for c, _ in runs], axis=1) if runs else np.empty((n_resamples, 0))
    costs = np.stack([t[idx].mean(axis=1) for _, t in runs], axis=1) if runs else np.empty((n_resamples, 0))
    values = np.full(n_resamples, math.inf)
    for b in range(n_resamples):
        value = cpt(list(zip(costs[b], accs[b], strict=True)), r_weak[b], r_strong[b], x)
        if value is not None:
            values[b] = value
    return _percentile_interval(values, level, n_resamples)
