"""TRIM-Seq (DESIGN.md §5): the policy reads the whole sequence of (score, tokens) pairs.

As in the paper, a small transformer encodes the step history (``learn.features`` ``seq``: one row per
position); its output at the current position feeds the same actor and critic MLPs as TRIM-Agg. The
attention is causal, so the encoding of position t depends on positions 0..t only and the zero rows
padding the history to ``max_steps`` never matter. At run time the policy re-encodes the full history
from the observation at every call, which keeps ``decide`` pure.
"""

from __future__ import annotations

import torch
from gymnasium import spaces
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn

from trimroute.policies.agg import LearnedPolicy, load_learned

__all__ = ["StepSequenceExtractor", "load_seq"]


class StepSequenceExtractor(BaseFeaturesExtractor):
    """Causal transformer over a (max_steps, columns) history; returns the current (last valid) position.

    Column 0 of each row is the valid flag (``learn.features.SEQ_COLUMNS``).
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


def load_seq(arg: str | None) -> LearnedPolicy:
    """``seq:PATH``: a TRIM-Seq artifact."""
    return load_learned("seq", arg)
