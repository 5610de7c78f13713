"""TRIM-Agg at run time (DESIGN.md §5): a PPO-trained network over a few aggregated score features.

``LearnedPolicy`` also serves TRIM-Seq (``policies.seq``): both compute their input from the observation
alone and take the network's most likely action, so ``decide`` stays a pure function.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from stable_baselines3.common.policies import ActorCriticPolicy

from trimroute.errors import ConfigError
from trimroute.policies.artifacts import load_artifact
from trimroute.policies.features import FeatureSet
from trimroute.types import Action, Observation

__all__ = ["LearnedPolicy", "load_agg", "load_learned"]


@dataclass(eq=False)
class LearnedPolicy:
    """Features of the observation -> actor network -> argmax action (deterministic; nothing mutates it)."""

    name: str
    features: FeatureSet
    network: ActorCriticPolicy
    fixed_action: Action | None = None
    needs_scores: bool = True

    def decide(self, obs: Observation) -> Action:
        action, _ = self.network.predict(self.features(obs), deterministic=True)
        return Action.REGENERATE if int(np.asarray(action).item()) == 1 else Action.CONTINUE


def load_learned(kind: str, arg: str | None) -> LearnedPolicy:
    """The policy ``kind:arg`` from an artifact folder written by ``trim train``."""
    if not arg:
        raise ConfigError(f"policy {kind!r} needs an artifact folder, e.g. {kind}:runs/{kind}/lam_0.0005/policy")
    features, network, _ = load_artifact(Path(arg), kind)
    return LearnedPolicy(name=f"{kind}:{arg}", features=features, network=network)


def load_agg(arg: str | None) -> LearnedPolicy:
    """``agg:PATH``: a TRIM-Agg artifact."""
    return load_learned("agg", arg)
