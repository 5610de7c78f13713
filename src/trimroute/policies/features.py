"""Observation features of the learned policies (DESIGN.md §5), computed from an ``Observation`` alone.

The RL environment and the runtime policies call the same ``FeatureSet``, so a policy sees at run time
exactly what it saw in training. Feature sets are named and versioned; artifacts record the set (names,
normalisation, version) and loading one that does not match this code raises ``ArtifactError``.

- ``official`` (TRIM-Agg as in the official code): current score, min of previous scores, current step
  tokens / 300, step index / 30, product of previous scores.
- ``paper``: the four features of the paper's text (no product).
- ``budget``: ``official`` plus strong tokens spent / 300 and strong budget left / 300 (for budgeted runs).
- ``seq`` (TRIM-Seq): the whole history as a (max_steps, 4) array, one row per position: valid flag,
  score, tokens / 300, whether that position was regenerated; rows past the current step are zero.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from gymnasium import spaces

from trimroute.errors import ArtifactError, ConfigError
from trimroute.types import Action, Observation

FEATURES_VERSION = 1
TOKEN_SCALE = 300.0  # official normalisation of token counts
STEP_SCALE = 30.0  # official normalisation of the step index
CLIP = 10.0  # token features are clipped to [0, CLIP] so the observation space is bounded
NO_BUDGET = CLIP  # "budget left" when no budget applies: as much as the feature can say

Kind = Literal["agg", "seq"]


def _tokens(n: float) -> float:
    return min(max(n / TOKEN_SCALE, 0.0), CLIP)


SCALAR_FEATURES: Mapping[str, Callable[[Observation], float]] = {
    "score": lambda o: o.score,
    "min_prev": lambda o: o.min_prev_score,
    "tokens": lambda o: _tokens(o.tokens),
    "step": lambda o: min(o.step_index / STEP_SCALE, CLIP),
    "prod_prev": lambda o: o.prod_prev_score,
    "strong_spent": lambda o: _tokens(o.strong_tokens_spent),
    "budget_left": lambda o: NO_BUDGET if o.budget_left is None else _tokens(o.budget_left),
}
SEQ_COLUMNS = ("valid", "score", "tokens", "regenerated")


@dataclass(frozen=True)
class FeatureSet:
    """A named way of turning an ``Observation`` into the network's input array."""

    name: str
    kind: Kind
    columns: tuple[str, ...]
    max_steps: int = 30  # seq only: rows of the history array

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.columns),) if self.kind == "agg" else (self.max_steps, len(self.columns))

    def space(self) -> spaces.Box:
        return spaces.Box(low=0.0, high=CLIP, shape=self.shape, dtype=np.float32)

    def __call__(self, obs: Observation) -> np.ndarray:
        if any(np.isnan(s) for s in obs.scores):
            raise ConfigError("learned policies need step scores; configure a scorer (--scorer)")
        if self.kind == "agg":
            return np.array([SCALAR_FEATURES[c](obs) for c in self.columns], dtype=np.float32)
        return self._history(obs)

    def _history(self, obs: Observation) -> np.ndarray:
        # keep the newest max_steps positions when a run allows more steps than training did
        first = max(0, len(obs.scores) - self.max_steps)
        out = np.zeros(self.shape, dtype=np.float32)
        actions = (*obs.actions, Action.CONTINUE)  # the current proposal is undecided
        for row, i in enumerate(range(first, len(obs.scores))):
            out[row] = (1.0, obs.scores[i], _tokens(obs.step_tokens[i]), float(actions[i] is Action.REGENERATE))
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "columns": list(self.columns),
            "max_steps": self.max_steps,
            "version": FEATURES_VERSION,
            "token_scale": TOKEN_SCALE,
            "step_scale": STEP_SCALE,
            "clip": CLIP,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FeatureSet:
        """The feature set an artifact recorded; ``ArtifactError`` if this code computes it differently."""
        name = d.get("name")
        if name not in FEATURE_SETS:
            raise ArtifactError(f"artifact uses feature set {name!r}, unknown here; known: {', '.join(FEATURE_SETS)}")
        expected = feature_set(str(name), int(d.get("max_steps", 30))).to_dict()
        diff = sorted(k for k in expected if d.get(k) != expected[k])
        if diff:
            raise ArtifactError(
                f"artifact feature set {name!r} does not match this trimroute ({', '.join(diff)} differ: "
                f"artifact {[d.get(k) for k in diff]} vs here {[expected[k] for k in diff]}); retrain the policy"
            )
        return feature_set(str(name), int(d["max_steps"]))


FEATURE_SETS: Mapping[str, tuple[Kind, tuple[str, ...]]] = {
    "official": ("agg", ("score", "min_prev", "tokens", "step", "prod_prev")),
    "paper": ("agg", ("score", "min_prev", "tokens", "step")),
    "budget": ("agg", ("score", "min_prev", "tokens", "step", "prod_prev", "strong_spent", "budget_left")),
    "seq": ("seq", SEQ_COLUMNS),
}
DEFAULT_FEATURES: Mapping[Kind, str] = {"agg": "official", "seq": "seq"}


def feature_set(name: str, max_steps: int = 30) -> FeatureSet:
    """The feature set called ``name`` (see the module docstring)."""
    if name not in FEATURE_SETS:
        raise ConfigError(f"unknown feature set {name!r}; valid: {', '.join(FEATURE_SETS)}")
    if max_steps < 1:
        raise ConfigError(f"max_steps must be >= 1, got {max_steps}")
    kind, columns = FEATURE_SETS[name]
    return FeatureSet(name=name, kind=kind, columns=columns, max_steps=max_steps)
