"""Per-step features of the PRM-free scorers, the common ground of those scorers and the composite.

A feature scorer computes a few named numbers per step (e.g. mean and min token log-probability);
its ``score`` maps one of them into [0, 1], and the composite scorer combines all of them through a
fitted logistic model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from trimroute.types import Problem, Scores, Step


@dataclass(frozen=True)
class Features:
    """Named features, one row per step, and the model tokens spent computing them."""

    names: tuple[str, ...]
    rows: tuple[tuple[float, ...], ...]
    prompt_tokens: int = 0
    calls: int = 0

    def column(self, name: str) -> tuple[float, ...]:
        i = self.names.index(name)
        return tuple(row[i] for row in self.rows)

    def to_scores(self, values: Sequence[float]) -> Scores:
        """Scores carrying this computation's token usage."""
        return Scores(tuple(values), prompt_tokens=self.prompt_tokens, generated_tokens=0, calls=self.calls)


@runtime_checkable
class FeatureScorer(Protocol):
    """A scorer that also exposes the per-step features behind its score."""

    name: str
    feature_names: tuple[str, ...]

    async def features(self, problem: Problem, steps: Sequence[Step]) -> Features: ...

    async def score(self, problem: Problem, steps: Sequence[Step]) -> Scores: ...

    async def aclose(self) -> None: ...
