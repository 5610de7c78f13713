"""AutoMix's POMDP router on a step scorer's verdict: AutoMix-PRM (Aggarwal et al. 2023, "AutoMix:
Automatically Mixing Language Models", the meta-verifier; official code ``automix/automix_methods.py``,
``POMDPSimple``).

The weak model answers in full and a verifier scores its solution: here the aggregated PRM score
(product or minimum of the step scores) instead of AutoMix's few-shot self-verification. The hidden
state of a problem is one of three classes: the weak model solves it (GOOD), neither model does
(HOPELESS), only the strong model does (NEEDY). The observation is the verifier score, discretised into
uniform bins centred at 0, 1/B, ..., 1 (a score goes to the nearest centre); the belief in a bin is
the class frequencies of the training problems that fall in it.

With two models the POMDP has a single step (AutoMix: "we do not require explicit use of POMDP
solvers"): in each bin, take the action with the highest expected return. Keeping the weak answer
earns 1 if the class is GOOD; escalating earns 1 if GOOD or NEEDY (AutoMix assumes the strong model
solves what the weak one solves) and pays λ·C̄ for the strong model's tokens. Escalating wins exactly
when P(NEEDY | bin) > λ·C̄, so the score of a problem is P(NEEDY | its bin) and the trade-off λ is
the threshold t = λ·C̄ of the sweep. A bin without training problems has no belief and keeps the weak
answer (score 0), as in ``POMDPSimple``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from trimroute.errors import ConfigError, DataError
from trimroute.eval.baselines.base import Example, Outcome

__all__ = ["AutoMixPRM"]

DEFAULT_BINS = 10


class AutoMixPRM:
    """P(only the strong model solves it | verifier-score bin), estimated on a training split."""

    def __init__(self, bins: int = DEFAULT_BINS) -> None:
        if bins < 1:
            raise ConfigError(f"AutoMix needs at least 1 bin of the verifier score, got {bins}")
        self.bins = bins
        self.needy: np.ndarray | None = None  # P(NEEDY | bin), one per bin centre

    def _bin(self, examples: Sequence[Example]) -> np.ndarray:
        scores = []
        for e in examples:
            if e.verifier_score is None or not 0 <= e.verifier_score <= 1:
                raise DataError(
                    f"AutoMix needs the verifier's score of each weak solution in [0, 1], got {e.verifier_score!r}"
                )
            scores.append(e.verifier_score)
        # nearest centre k / bins; a score half-way goes up, as POMDPSimple's half-open bins do
        return np.floor(np.asarray(scores) * self.bins + 0.5).astype(int)

    def fit(self, examples: Sequence[Example], outcomes: Sequence[Outcome]) -> None:
        bins = self._bin(examples)
        needy = np.array([o.strong_correct and not o.weak_correct for o in outcomes], dtype=float)
        count = np.bincount(bins, minlength=self.bins + 1)
        hits = np.bincount(bins, weights=needy, minlength=self.bins + 1)
        self.needy = np.divide(hits, count, out=np.zeros(self.bins + 1), where=count > 0)

    def score(self, examples: Sequence[Example]) -> np.ndarray:
        if self.needy is None:
            raise RuntimeError("AutoMixPRM.score called before fit")
        return self.needy[self._bin(examples)]
