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


def build_scorer(config: ScorerConfig) -> Scorer | None:
    if config.kind == "none":
        return None
    return SCORERS.create(config.kind, config)
