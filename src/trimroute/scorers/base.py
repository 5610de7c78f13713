"""The scorer interface: one async method that scores every step of a partial solution."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from trimroute.errors import ScorerError
from trimroute.types import Problem, Scores, Step


@runtime_checkable
class Scorer(Protocol):
    """Estimates, for each step, the probability that it is correct.

    ``score`` receives the whole history (accepted steps plus the newest proposal last) and returns one
    value in [0, 1] per step, plus the tokens it used.
    """

    name: str

    async def score(self, problem: Problem, steps: Sequence[Step]) -> Scores: ...

    async def aclose(self) -> None: ...


def check_scores(scorer: str, scores: Scores, n_steps: int) -> Scores:
    """Validate a scorer's answer (used by the engine, so every scorer gets the same checks)."""
    if len(scores.values) != n_steps:
        raise ScorerError(
            f"scorer {scorer!r} returned {len(scores.values)} scores for {n_steps} steps; "
            "check that its step separator / tag matches the request format"
        )
    bad = [v for v in scores.values if not 0.0 <= v <= 1.0]
    if bad:
        raise ScorerError(f"scorer {scorer!r} returned scores outside [0, 1]: {bad[:3]}")
    return scores
