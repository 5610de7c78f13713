"""RouteLLM's matrix factorisation router (Ong et al. 2024, "Routing approaches": matrix
factorization; official code ``routellm/routers/matrix_factorization/``).

A bilinear score s(m, q) = w₂ᵀ(v̂_m ⊙ W₁ e_q) of a model embedding v_m (unit-normalised) and the
problem's text embedding e_q, learned from battles with a winner: the loss is binary cross-entropy
of σ(s(winner, q) − s(loser, q)) against 1, ties are left out (``train_matrix_factorization.py``
filters them), Gaussian noise of scale α is added to the text embedding in training. The score of a
new problem is the strong model's win rate σ(s(strong, q) − s(weak, q)).

Hyperparameters are the official example's: dimension 128, Adam with learning rate 3e-4 and weight
decay 1e-5, batch 64, 100 epochs, α = 0.1; no bias anywhere ("bias should be False!"). Embeddings are
all-MiniLM-L6-v2 (384-d, offline) instead of text-embedding-3-small.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from trimroute.errors import DataError
from trimroute.eval.baselines.base import Embedder, Example, Outcome, Pairwise, minilm

__all__ = ["MFConfig", "MatrixFactorization"]

WEAK, STRONG = 0, 1


@dataclass(frozen=True)
class MFConfig:
    dim: int = 128
    lr: float = 3e-4
    weight_decay: float = 1e-5
    batch_size: int = 64
    epochs: int = 100
    noise: float = 0.1
    seed: int = 0


class _Net(torch.nn.Module):
    def __init__(self, text_dim: int, dim: int) -> None:
        super().__init__()
        self.models = torch.nn.Embedding(2, dim)
        self.text_proj = torch.nn.Linear(text_dim, dim, bias=False)
        self.classifier = torch.nn.Linear(dim, 1, bias=False)

    def margin(self, first: torch.Tensor, second: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """s(first, q) − s(second, q) for each row."""
        unit = torch.nn.functional.normalize
        models = unit(self.models(first), dim=1) - unit(self.models(second), dim=1)
        return torch.as_tensor(self.classifier(models * self.text_proj(text)).squeeze(-1))


class MatrixFactorization:
    """Bilinear model × problem score; P(strong wins | q) = σ(s(strong, q) − s(weak, q))."""

    def __init__(self, embed: Embedder | None = None, config: MFConfig | None = None) -> None:
        self._embed: Embedder = embed or minilm
        self.config = config or MFConfig()
        self._net: _Net | None = None

    def fit(self, examples: Sequence[Example], outcomes: Sequence[Outcome]) -> None:
        cfg = self.config
        decisive = [(e, o) for e, o in zip(examples, outcomes, strict=True) if o.pairwise != Pairwise.TIE]
        if not decisive:
            raise DataError(
                "matrix factorisation learns from problems only one model solves; the training set has none"
            )
        x = torch.tensor(np.asarray(self._embed([e.text for e, _ in decisive]), dtype=np.float32))
        winner = torch.tensor([STRONG if o.pairwise == Pairwise.STRONG_WINS else WEAK for _, o in decisive])
        generator = torch.Generator().manual_seed(cfg.seed)
        with torch.random.fork_rng():  # seed the initial weights without touching the caller's RNG
            torch.manual_seed(cfg.seed)
            net = _Net(x.shape[1], cfg.dim)
        optimiser = torch.optim.Adam(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        loss = torch.nn.BCEWithLogitsLoss()
        for _ in range(cfg.epochs):
            for batch in torch.randperm(len(x), generator=generator).split(cfg.batch_size):
                noisy = x[batch] + cfg.noise * torch.randn(x[batch].shape, generator=generator)
                logits = net.margin(winner[batch], 1 - winner[batch], noisy)
                optimiser.zero_grad()
                loss(logits, torch.ones_like(logits)).backward()
                optimiser.step()
        self._net = net

    def score(self, examples: Sequence[Example]) -> np.ndarray:
        if self._net is None:
            raise RuntimeError("MatrixFactorization.score called before fit")
        x = torch.tensor(np.asarray(self._embed([e.text for e in examples]), dtype=np.float32))
        n = len(x)
        with torch.no_grad():
            margin = self._net.margin(torch.full((n,), STRONG), torch.full((n,), WEAK), x)
        return torch.sigmoid(margin).numpy().astype(float)
