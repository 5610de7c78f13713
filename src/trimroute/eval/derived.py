"""Query-level baselines built from the weak-only and strong-only trajectories (DESIGN.md §5).

A query-level router sends the whole problem either to the weak model or to the strong one. Running
it again would repeat exactly the weak-only or strong-only calls, so its trajectories are assembled
from those runs with the same cost accounting: a problem that AutoMix escalates pays for the weak
solution it threw away, the scorer call that judged it, and the strong solution.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping, Sequence
from dataclasses import replace

import numpy as np

from trimroute.errors import DataError
from trimroute.scorers.base import Scorer, check_scores
from trimroute.types import Action, Scores, Trajectory, Usage

__all__ = ["aggregate", "automix_scores", "default_thresholds", "oracle", "route_whole", "threshold_name"]


def route_whole(
    weak: Trajectory,
    strong: Trajectory,
    to_strong: bool,
    policy: str,
    *,
    weak_first: bool,
    extra: Usage | None = None,
    meta: Mapping[str, object] | None = None,
) -> Trajectory:
    """The trajectory of a problem routed as a whole to the weak or the strong model.

    ``weak_first``: the weak model answered before the router decided (AutoMix), so an escalated problem
    also pays for the weak solution, counted as discarded weak tokens. A router that decides from the
    question alone (query routers, the oracle) pays only for the model it picks. ``extra`` is the
    router's own usage (AutoMix's scorer call).
    """
    extra = extra or Usage()
    meta = {**dict(meta or {}), "routed_to": "strong" if to_strong else "weak"}
    if not to_strong:
        return replace(weak, policy=policy, usage=weak.usage + extra, meta={**weak.meta, **meta})
    if not weak_first:
        return replace(strong, policy=policy, usage=strong.usage + extra, meta={**strong.meta, **meta})
    usage = (weak.usage + strong.usage + extra).add(
        "weak", discarded_tokens=weak.usage.weak.generated_tokens - weak.usage.weak.discarded_tokens
    )
    return replace(
        strong,
        discarded=(*weak.discarded, *(replace(s, action=Action.REGENERATE) for s in weak.steps)),
        usage=usage,
        policy=policy,
        wall_time_s=weak.wall_time_s + strong.wall_time_s,
        meta={**strong.meta, **meta},
    )


def aggregate(values: Sequence[float], how: str) -> float:
    """AutoMix-PRM's solution score: product or minimum of the step scores."""
    return math.prod(values) if how == "prod" else min(values, default=1.0)


async def automix_scores(scorer: Scorer, weak: Sequence[Trajectory], *, concurrency: int = 8) -> dict[str, Scores]:
    """The scorer's step scores of every weak-only solution, by problem id (one call per problem)."""
    slots = asyncio.Semaphore(concurrency)

    async def one(t: Trajectory) -> Scores:
        if not t.steps:
            raise DataError(f"weak-only trajectory of {t.problem.id!r} has no steps to score")
        async with slots:
            return check_scores(scorer.name, await scorer.score(t.problem, list(t.steps)), len(t.steps))

    scores = await asyncio.gather(*(one(t) for t in weak))
    return {t.problem.id: s for t, s in zip(weak, scores, strict=True)}


def default_thresholds(scores: Sequence[float], n: int = 11) -> tuple[float, ...]:
    """Cut points at the score quantiles (0 %, 10 %, ...), plus one above every score (route all):
    an even spread of escalation rates whatever the scale of the scores."""
    if not scores:
        raise DataError("no router scores to derive thresholds from")
    qs = np.quantile(np.asarray(scores, dtype=float), np.linspace(0.0, 1.0, n))
    cuts = sorted({round(float(q), 6) for q in qs})
    return (*cuts, math.inf)


def threshold_name(family: str, threshold: float) -> str:
    return f"{family}:{'inf' if math.isinf(threshold) else f'{threshold:.6g}'}"


def oracle(weak: Trajectory, strong: Trajectory) -> Trajectory:
    """Strong only where it fixes a weak failure, at no routing cost: the upper bound of any query router."""
    if weak.correct is None or strong.correct is None:
        raise DataError(f"the oracle needs graded weak and strong results; {weak.problem.id!r} has no grade")
    return route_whole(weak, strong, not weak.correct and strong.correct, "oracle", weak_first=False)
