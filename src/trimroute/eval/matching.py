"""Random step routing at a matched budget (DESIGN.md §5): find the p whose mean strong tokens hit a target.

``random:p`` spends more strong tokens as p grows, but not in proportion to p (a regenerated step is
as long as the strong model writes it, and regenerating changes the steps that follow), so
p = C̄(thr point) / C̄(strong-only) misses the budget. ``match_budget`` searches p by bisection,
guided by interpolation inside the bracket, with pilot runs that the call cache makes cheap, until the
achieved budget is within ±``tolerance`` of the target. A comparison is "at the same budget" only
when ``same_budget`` holds.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from trimroute.errors import ConfigError

__all__ = ["BUDGET_TOLERANCE", "BudgetMatch", "match_budget", "same_budget"]

BUDGET_TOLERANCE = 0.02  # ±2 % of the target's mean strong tokens
P_DIGITS = 4  # p is rounded so that point names stay short (random:0.1234); the bracket stops there


def same_budget(achieved: float, target: float, tolerance: float = BUDGET_TOLERANCE) -> bool:
    """Whether ``achieved`` mean strong tokens are within ±``tolerance`` (relative) of ``target``."""
    return abs(achieved - target) <= tolerance * target


@dataclass(frozen=True)
class BudgetMatch:
    """The outcome of a search: the p closest to the target and every pilot run, in order."""

    target: float
    p: float
    budget: float  # mean strong tokens per problem achieved with p
    pilots: tuple[tuple[float, float], ...]  # (p, budget) of every evaluation
    tolerance: float

    @property
    def matched(self) -> bool:
        return same_budget(self.budget, self.target, self.tolerance)

    @property
    def relative_error(self) -> float | None:
        return (self.budget - self.target) / self.target if self.target > 0 else None

    def describe(self) -> str:
        """One line for a report, saying plainly when the budget was not matched."""
        error = self.relative_error
        gap = "" if error is None else f" ({error:+.1%})"
        head = f"random:{self.p:g} spends {self.budget:.1f} strong tokens per problem for a target of {self.target:.1f}"
        if self.matched:
            return f"{head}{gap}: same budget"
        return f"{head}{gap}: NOT the same budget (±{self.tolerance:.0%} not reached in {len(self.pilots)} pilot runs)"


async def match_budget(
    evaluate: Callable[[float], Awaitable[float]],
    target: float,
    *,
    first: float | None = None,
    tolerance: float = BUDGET_TOLERANCE,
    max_pilots: int = 10,
) -> BudgetMatch:
    """Search p in [0, 1] until ``evaluate(p)`` (mean strong tokens of ``random:p``) is within ±tolerance.

    ``first`` is the first guess (e.g. the target's share of the strong-only tokens). p = 0 routes
    nothing and costs nothing, so the bracket starts at (0, 0) without a pilot. Each next p interpolates
    linearly inside the bracket, kept at least 5 % of its width from either end so that the bracket
    shrinks even when the budget is far from linear in p. The search stops when matched, after
    ``max_pilots`` evaluations, or when the bracket is narrower than p's rounding; the result then holds
    the closest pilot and ``matched`` is False (e.g. when even p = 1 spends less than the target).
    """
    if not (target >= 0 and tolerance > 0 and max_pilots >= 1):
        raise ConfigError(
            f"budget matching needs a target >= 0, a tolerance > 0 and max_pilots >= 1; "
            f"got {target}, {tolerance}, {max_pilots}"
        )
    if first is not None and not 0 <= first <= 1:
        raise ConfigError(f"the first guess of p must be in [0, 1], got {first}")
    lo: tuple[float, float] = (0.0, 0.0)
    hi: tuple[float, float | None] = (1.0, None)  # p = 1's budget is unknown until a pilot runs it
    p = round(first if first is not None else 0.5, P_DIGITS) if target > 0 else 0.0
    pilots: list[tuple[float, float]] = []
    for _ in range(max_pilots):
        budget = await evaluate(p)
        pilots.append((p, budget))
        if same_budget(budget, target, tolerance) or target == 0:
            break
        if budget < target:
            lo = (p, budget)
        else:
            hi = (p, budget)
        width = hi[0] - lo[0]
        if width <= 10**-P_DIGITS:
            break
        if hi[1] is None:  # no pilot above the target yet: scale p, allowing p = 1 itself
            guess, upper = (p * target / budget if budget > 0 else 2 * p), hi[0]
        else:
            guess, upper = lo[0] + width * (target - lo[1]) / (hi[1] - lo[1]), hi[0] - 0.05 * width
        p = round(min(max(guess, lo[0] + 0.05 * width), upper), P_DIGITS)
        if any(p == q for q, _ in pilots):  # rounding met an earlier pilot: the bracket is spent
            break
    best_p, best_budget = min(pilots, key=lambda pb: abs(pb[1] - target))
    return BudgetMatch(target, best_p, best_budget, tuple(pilots), tolerance)
