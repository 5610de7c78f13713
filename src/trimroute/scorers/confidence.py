"""Weak self-confidence: a free, PRM-free step scorer read off the proposal's own token log-probabilities.

The engine stores the weak model's sampled-token log-probabilities in ``Step.token_logprobs`` when
``EngineConfig.weak_logprobs`` is on. A step the model wrote hesitantly (low mean, or one very unlikely
token) is more often where a solution goes wrong; the score is the geometric-mean token probability
``exp(mean logprob)`` (or ``exp(min logprob)``). Steps written by the strong model carry no weak
log-probabilities and score 1.0: the strong model is the one trusted to fix steps (TRIM §3).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from trimroute.errors import ConfigError, ScorerError
from trimroute.scorers.features import Features
from trimroute.types import Problem, Scores, Step

if TYPE_CHECKING:
    from trimroute.config import ScorerConfig

__all__ = ["STATISTICS", "ConfidenceScorer", "confidence_scorer", "logprob_stats"]

STATISTICS = ("mean", "min")


def logprob_stats(logprobs: Sequence[float]) -> tuple[float, float]:
    """(mean, min) of token log-probabilities; an empty step is certain (0, 0)."""
    if not logprobs:
        return 0.0, 0.0
    return sum(logprobs) / len(logprobs), min(logprobs)


def check_statistic(statistic: str, scorer: str) -> str:
    if statistic not in STATISTICS:
        raise ConfigError(f"scorer {scorer!r}: statistic must be one of {', '.join(STATISTICS)}, got {statistic!r}")
    return statistic


@dataclass
class ConfidenceScorer:
    """Scores each weak step by its own token log-probabilities (no model call, no tokens)."""

    statistic: str = "mean"
    name: str = "confidence"
    feature_names: tuple[str, ...] = ("conf_mean", "conf_min")

    def __post_init__(self) -> None:
        check_statistic(self.statistic, self.name)

    async def features(self, problem: Problem, steps: Sequence[Step]) -> Features:
        rows = []
        for i, step in enumerate(steps):
            if step.role == "strong":
                rows.append((0.0, 0.0))
            elif step.token_logprobs is None:
                raise ScorerError(
                    f"scorer 'confidence': weak step {i} has no token log-probabilities; "
                    "run the engine with engine.weak_logprobs=true"
                )
            else:
                rows.append(logprob_stats(step.token_logprobs))
        return Features(self.feature_names, tuple(rows), calls=0)

    async def score(self, problem: Problem, steps: Sequence[Step]) -> Scores:
        feats = await self.features(problem, steps)
        column = feats.column(f"conf_{self.statistic}")
        return feats.to_scores([math.exp(v) for v in column])

    async def aclose(self) -> None:
        return None


def confidence_scorer(config: ScorerConfig) -> ConfidenceScorer:
    """Registry factory (``kind: confidence``, ``options: {statistic: mean|min}``)."""
    options = dict(config.options)
    statistic = options.pop("statistic", "mean")
    if options:
        raise ConfigError(f"scorer 'confidence' takes only the option 'statistic', got {sorted(options)}")
    return ConfidenceScorer(statistic=statistic)
