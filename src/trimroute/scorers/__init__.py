"""Step scorers, registered by name (the ``kind`` of a ``ScorerConfig``).

Each entry is a factory ``(ScorerConfig) -> Scorer``, imported lazily. ``none`` means no scorer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from trimroute.registry import Registry
from trimroute.scorers.base import Scorer

if TYPE_CHECKING:
    from trimroute.config import ScorerConfig

__all__ = ["SCORERS", "Scorer", "build_scorer"]

SCORERS: Registry[Scorer] = Registry("scorer")
SCORERS.register("qwen-prm", "trimroute.scorers.qwen_prm:QwenPRMScorer")
SCORERS.register("math-shepherd", "trimroute.scorers.math_shepherd:MathShepherdScorer")
SCORERS.register("hf-prm", "trimroute.scorers.hf_prm:HFPRMScorer")
SCORERS.register("judge", "trimroute.scorers.judge:JudgeScorer")
SCORERS.register("arithmetic", "trimroute.scorers.arithmetic:arithmetic_scorer")
SCORERS.register("confidence", "trimroute.scorers.confidence:confidence_scorer")
SCORERS.register("likelihood", "trimroute.scorers.likelihood:likelihood_scorer")
SCORERS.register("composite", "trimroute.scorers.composite:composite_scorer")
SCORERS.register("sim", "trimroute.sim.backend:build_sim_scorer")


def build_scorer(config: ScorerConfig) -> Scorer | None:
    if config.kind == "none":
        return None
    return SCORERS.create(config.kind, config)
