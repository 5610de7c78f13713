"""The networks of TRIM-Agg and TRIM-Seq (DESIGN.md §5): what ``trim train`` builds and artifacts rebuild.

TRIM-Agg: separate actor and critic MLPs (2×128, Tanh) over a few aggregated score features. TRIM-Seq, as in
the paper, puts a small causal transformer over the step history in front (``StepSequenceExtractor``): the
encoding of position t depends on positions 0..t only, so the zero rows padding the history to
``max_steps`` never matter.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from gymnasium import spaces
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn

from trimroute.policies.features import FeatureSet

__all__ = ["ACTIVATIONS", "StepSequenceExtractor", "build_network", "network_spec", "policy_kwargs"]

ACTIVATIONS: Mapping[str, type[torch.nn.Module]] = {"tanh": torch.nn.Tanh, "relu": torch.nn.ReLU}


class StepSequenceExtractor(BaseFeaturesExtractor):
    """Causal transformer over a (max_steps, columns) history; returns the current (last valid) position.

    Column 0 of each row is the valid flag (``policies.features.SEQ_COLUMNS``).
    """

    def __init__(self, observation_space: spaces.Box, d_model: int = 32, n_heads: int = 2, n_layers: int = 1) -> None:
        super().__init__(observation_space, features_dim=d_model)
        max_steps, columns = observation_space.shape
        self.embed = nn.Linear(columns, d_model)
        self.position = nn.Parameter(torch.randn(max_steps, d_model) * 0.02)
        layer = nn.TransformerEncoderLayer(d_model, n_heads, dim_feedforward=2 * d_model, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        causal = torch.triu(torch.ones(max_steps, max_steps, dtype=torch.bool), diagonal=1)
        self.register_buffer("causal", causal, persistent=False)

    def forward(self, history: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(self.embed(history) + self.position, mask=self.causal)
        current = (history[..., 0] > 0.5).sum(dim=1).clamp(min=1) - 1
        return hidden[torch.arange(history.shape[0]), current]


def network_spec(kind: str) -> dict[str, Any]:
    """The paper's network (DESIGN.md §5): separate actor and critic MLPs, 2×128, Tanh; Seq adds the
    step-sequence transformer in front."""
    spec: dict[str, Any] = {"net_arch": {"pi": [128, 128], "vf": [128, 128]}, "activation": "tanh"}
    if kind == "seq":
        spec["extractor"] = {"name": "step-transformer", "d_model": 32, "n_heads": 2, "n_layers": 1}
    return spec


def policy_kwargs(spec: Mapping[str, Any]) -> dict[str, Any]:
    """SB3 ``policy_kwargs`` for a network spec (used for training and for loading alike)."""
    kwargs: dict[str, Any] = {
        "net_arch": {k: list(v) for k, v in spec["net_arch"].items()},
        "activation_fn": ACTIVATIONS[spec["activation"]],
    }
    extractor = spec.get("extractor")
    if extractor:
        kwargs["features_extractor_class"] = StepSequenceExtractor
        kwargs["features_extractor_kwargs"] = {k: v for k, v in extractor.items() if k != "name"}
        kwargs["share_features_extractor"] = False  # separate actor and critic, encoder included
    return kwargs


def build_network(features: FeatureSet, spec: Mapping[str, Any]) -> ActorCriticPolicy:
    """An untrained actor-critic network of the given spec over the feature set's space."""
    return ActorCriticPolicy(features.space(), spaces.Discrete(2), lambda _: 0.0, **policy_kwargs(spec))
