"""The paper's query-level baselines (DESIGN.md §5), written from their papers.

| name | router | module |
| --- | --- | --- |
| ``sw`` | RouteLLM similarity-weighted ranking | ``sw_ranking`` |
| ``mf`` | RouteLLM matrix factorisation | ``matrix_factorization`` |
| ``bert`` | RouteLLM BERT classifier (fine-tuned MiniLM) | ``bert`` |
| ``automix`` | AutoMix's POMDP on the PRM's score of the weak solution | ``automix`` |

Every router follows ``base.QueryRouter``: ``fit`` on training problems with both models' outcomes,
``score`` problems it has not seen; escalate where score >= threshold. ``score_baseline`` trains on a
separate split when one is given (the paper's setting) and cross-fits on the evaluation set otherwise.

Smoothie (Guha et al. 2024) is not here: it estimates each model's quality from the embeddings of
several models' answers to the same sample with a triplet method that needs at least three models;
with one weak and one strong model the two qualities are not identifiable.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from trimroute.errors import ConfigError, DataError
from trimroute.eval.baselines.base import (
    Embedder,
    Example,
    Outcome,
    Pairwise,
    QueryRouter,
    cross_fitted_scores,
    fit_and_score,
)
from trimroute.types import Trajectory

__all__ = [
    "BASELINES",
    "BaselineScores",
    "Embedder",
    "Example",
    "Outcome",
    "Pairwise",
    "QueryRouter",
    "cross_fitted_scores",
    "examples_from",
    "fit_and_score",
    "make_router",
    "memoized",
    "score_baseline",
]

BASELINES = ("sw", "mf", "bert", "automix")


def memoized(embed: Embedder) -> Embedder:
    """``embed`` computing each distinct text once (SW and MF embed the same problems)."""
    rows: dict[str, np.ndarray] = {}

    def cached(texts: Sequence[str]) -> np.ndarray:
        new = [t for t in dict.fromkeys(texts) if t not in rows]
        if new:
            rows.update(zip(new, np.asarray(embed(new), dtype=float), strict=True))
        return np.stack([rows[t] for t in texts]) if texts else np.empty((0, 0))

    return cached


def examples_from(
    weak: Sequence[Trajectory], strong: Sequence[Trajectory], verifier: Mapping[str, float] | None = None
) -> tuple[list[Example], list[Outcome]]:
    """A run's problems as router inputs and outcomes, from its graded weak-only and strong-only
    trajectories; ``verifier`` maps problem ids to the aggregated step score of the weak solution."""
    by_id = {t.problem.id: t for t in strong}
    examples, outcomes = [], []
    for w in weak:
        s = by_id.get(w.problem.id)
        if s is None or w.correct is None or s.correct is None:
            raise DataError(
                f"problem {w.problem.id!r} needs graded weak-only and strong-only results to train or cross-fit "
                "a query router (trim grade RUN)"
            )
        examples.append(Example(w.problem.text, None if verifier is None else verifier[w.problem.id]))
        outcomes.append(Outcome(bool(w.correct), bool(s.correct)))
    return examples, outcomes


def make_router(name: str, *, embed: Embedder | None = None, seed: int = 0) -> QueryRouter:
    """A fresh, untrained router by name; ``embed`` is the text embedder of ``sw`` and ``mf``."""
    if name == "sw":
        from trimroute.eval.baselines.sw_ranking import SWRanking

        return SWRanking(embed)
    if name == "mf":
        from trimroute.eval.baselines.matrix_factorization import MatrixFactorization, MFConfig

        return MatrixFactorization(embed, MFConfig(seed=seed))
    if name == "bert":
        from trimroute.eval.baselines.bert import BertClassifier, BertConfig

        return BertClassifier(BertConfig(seed=seed))
    if name == "automix":
        from trimroute.eval.baselines.automix import AutoMixPRM

        return AutoMixPRM()
    raise ConfigError(f"unknown query-level baseline {name!r}; valid: {', '.join(BASELINES)}")


@dataclass(frozen=True)
class BaselineScores:
    """A router's scores of the evaluation problems, and how it was trained (for the report)."""

    scores: np.ndarray
    training: str  # "separate split (N problems)" or "cross-fitted (K folds)"


def score_baseline(
    name: str,
    evaluation: Sequence[Example],
    *,
    train: tuple[Sequence[Example], Sequence[Outcome]] | None = None,
    evaluation_outcomes: Sequence[Outcome] | None = None,
    embed: Embedder | None = None,
    folds: int = 5,
    seed: int = 0,
) -> BaselineScores:
    """Score ``evaluation`` with baseline ``name``: trained on ``train`` when given, else cross-fitted on
    the evaluation problems' own outcomes (``evaluation_outcomes``), each fold scored by a router that
    never saw it."""
    if train is not None:
        examples, outcomes = train
        scores = fit_and_score(make_router(name, embed=embed, seed=seed), examples, outcomes, evaluation)
        return BaselineScores(scores, f"separate split ({len(examples)} problems)")
    if evaluation_outcomes is None:
        raise ConfigError(f"baseline {name!r} needs a training run (--train RUN_DIR) or graded evaluation results")
    scores = cross_fitted_scores(
        lambda: make_router(name, embed=embed, seed=seed), evaluation, evaluation_outcomes, folds=folds, seed=seed
    )
    return BaselineScores(scores, f"cross-fitted ({folds} folds)")
