"""RouteLLM's similarity-weighted (SW) ranking router (Ong et al. 2024, "Routing approaches":
similarity-weighted ranking; official code ``routellm/routers/routers.py::SWRankingRouter``).

For a new problem q, every training battle i is weighted by how similar its problem is to q:
w_i = γ^(1 + S_i) with γ = 10 and S_i the cosine similarity of the embeddings divided by the largest
similarity to q (``get_weightings``: 10 · 10^(s_i / max s)). A Bradley–Terry model is then fitted to
the weighted battles, a tie counting as one win for each side (``compute_elo_mle_with_tie``
duplicates every battle and splits a tie), and the strong model's predicted win rate is the score.

RouteLLM fits Bradley–Terry over many models (grouped into tiers); with one weak and one strong model
the maximum-likelihood win rate has a closed form, the weighted share of wins:
P(strong wins | q) = (Σ_i w_i [strong wins i] + ½ Σ_i w_i [tie i]) / Σ_i w_i.
Embeddings are all-MiniLM-L6-v2 (offline) instead of OpenAI's text-embedding-3-small.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from trimroute.eval.baselines.base import Embedder, Example, Outcome, Pairwise, minilm

__all__ = ["SWRanking"]

GAMMA = 10.0


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


class SWRanking:
    """Similarity-weighted Bradley–Terry win rate of the strong model."""

    def __init__(self, embed: Embedder | None = None) -> None:
        self._embed: Embedder = embed or minilm
        self._train: np.ndarray | None = None
        self._wins: np.ndarray | None = None  # 1 strong wins, 1/2 tie, 0 weak wins

    def fit(self, examples: Sequence[Example], outcomes: Sequence[Outcome]) -> None:
        self._train = _unit(np.asarray(self._embed([e.text for e in examples]), dtype=float))
        value = {Pairwise.STRONG_WINS: 1.0, Pairwise.TIE: 0.5, Pairwise.WEAK_WINS: 0.0}
        self._wins = np.array([value[o.pairwise] for o in outcomes])

    def score(self, examples: Sequence[Example]) -> np.ndarray:
        if self._train is None or self._wins is None:
            raise RuntimeError("SWRanking.score called before fit")
        similarity = _unit(np.asarray(self._embed([e.text for e in examples]), dtype=float)) @ self._train.T
        top = similarity.max(axis=1, keepdims=True)
        # RouteLLM divides by the largest similarity; guard the (never seen) case where it is not positive
        weights = GAMMA ** (1 + similarity / np.where(top > 0, top, 1.0))
        return (weights @ self._wins) / weights.sum(axis=1)
