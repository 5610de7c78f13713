"""TRIM-Thr (DESIGN.md §5): regenerate iff the newest step's score is below k."""

from __future__ import annotations

from dataclasses import dataclass

from trimroute.errors import ConfigError
from trimroute.types import Action, Observation


@dataclass(frozen=True)
class ThresholdPolicy:
    """Escalate the proposal when its score < ``threshold``. k = 0 is weak-only, k > 1 strong-only-like."""

    threshold: float
    fixed_action: Action | None = None
    needs_scores: bool = True

    def __post_init__(self) -> None:
        if not 0.0 <= self.threshold <= 1.0:
            raise ConfigError(f"threshold must be in [0, 1], got {self.threshold}; scores are probabilities")

    @property
    def name(self) -> str:
        return f"thr:{self.threshold:g}"

    def decide(self, obs: Observation) -> Action:
        return Action.REGENERATE if obs.score < self.threshold else Action.CONTINUE
