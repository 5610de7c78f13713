"""A Qwen2 process reward model for tests: Qwen2.5-Math-PRM's architecture (a Qwen2 body and a
Linear-ReLU-Linear head with two labels per token), loadable with ``trust_remote_code`` the way the real
model is. vLLM serves the same weights with its own ``Qwen2ForProcessRewardModel``."""

from __future__ import annotations

import torch
from torch import nn
from transformers import Qwen2Config, Qwen2Model, Qwen2PreTrainedModel
from transformers.modeling_outputs import TokenClassifierOutput


class Qwen2ForProcessRewardModel(Qwen2PreTrainedModel):
    config_class = Qwen2Config

    def __init__(self, config: Qwen2Config) -> None:
        super().__init__(config)
        self.model = Qwen2Model(config)
        self.score = nn.Sequential(
            nn.Linear(config.hidden_size, config.hidden_size), nn.ReLU(), nn.Linear(config.hidden_size, 2)
        )
        self.post_init()

    def forward(self, input_ids: torch.Tensor, **kwargs: object) -> TokenClassifierOutput:
        hidden = self.model(input_ids=input_ids).last_hidden_state
        return TokenClassifierOutput(logits=self.score(hidden))
