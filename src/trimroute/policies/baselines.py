"""Baseline policies (DESIGN.md §5): weak-only, strong-only, random(p)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from trimroute.errors import ConfigError
from trimroute.policies.base import final_modifier
from trimroute.types import Action, Observation


@dataclass(frozen=True)
class WeakOnly:
    """Never escalate: the weak model writes everything (no scorer calls)."""

    name: str = "weak"
    fixed_action: Action | None = Action.CONTINUE
    needs_scores: bool = False

    def decide(self, obs: Observation) -> Action:
        return Action.CONTINUE


@dataclass(frozen=True)
class StrongOnly:
    """The strong model writes every step (no weak proposals, no scorer calls)."""

    name: str = "strong"
    fixed_action: Action | None = Action.REGENERATE
    needs_scores: bool = False

    def decide(self, obs: Observation) -> Action:
        return Action.REGENERATE


@dataclass(frozen=True)
class RandomPolicy:
    """Regenerate each step with probability ``p``.

    The coin is a hash of (seed, problem id, step index), so the policy stays pure and reproducible.
    ``keep_final`` (``random:P:keep-final``) never rewrites the step that ends the solution, like
    ``thr:K:keep-final``: the control that tells a scorer's ranking from merely sparing the answer step.
    """

    p: float
    keep_final: bool = False
    seed: int = 0
    fixed_action: Action | None = None
    needs_scores: bool = False

    def __post_init__(self) -> None:
        if not 0.0 <= self.p <= 1.0:
            raise ConfigError(f"random policy probability must be in [0, 1], got {self.p}")

    @property
    def name(self) -> str:
        return f"random:{self.p:g}{final_modifier(self.keep_final)}"

    def decide(self, obs: Observation) -> Action:
        if self.keep_final and obs.is_final:
            return Action.CONTINUE
        key = f"{self.seed}\x00{obs.problem_id}\x00{obs.step_index}".encode()
        u = int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little") / 2**64
        return Action.REGENERATE if u < self.p else Action.CONTINUE
