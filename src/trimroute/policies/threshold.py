"""TRIM-Thr (DESIGN.md §5): regenerate iff the newest step's score is below k."""

from __future__ import annotations

from dataclasses import dataclass

from trimroute.errors import ConfigError
from trimroute.policies.base import final_modifier
from trimroute.types import Action, Observation


@dataclass(frozen=True)
class ThresholdPolicy:
    """Escalate the proposal when its score < ``threshold``. k = 0 is weak-only, k > 1 strong-only-like.

    With ``keep_final`` (spec ``thr:K:keep-final``, not in the paper) the weak model's final step, the one
    stating the answer, is never rewritten: rewriting it seldom mends an earlier wrong step, and a scorer
    that scores answer steps low would otherwise spend most of the budget there (docs/cpu.md).
    """

    threshold: float
    keep_final: bool = False
    fixed_action: Action | None = None
    needs_scores: bool = True

    def __post_init__(self) -> None:
        if not 0.0 <= self.threshold <= 1.0:
            raise ConfigError(f"threshold must be in [0, 1], got {self.threshold}; scores are probabilities")

    @property
    def name(self) -> str:
        return f"thr:{self.threshold:g}{final_modifier(self.keep_final)}"

    def decide(self, obs: Observation) -> Action:
        if self.keep_final and obs.is_final:
            return Action.CONTINUE
        return Action.REGENERATE if obs.score < self.threshold else Action.CONTINUE
