"""Build an engine and a policy from a ``RunConfig`` (shared by ``trim run``, ``trim eval`` and the server)."""

from __future__ import annotations

from trimroute.config import RunConfig
from trimroute.engine import Engine
from trimroute.generators import build_generator
from trimroute.scorers import build_scorer


def build_engine(config: RunConfig) -> Engine:
    """Backends from the config; one generator object when weak and strong are the same endpoint."""
    weak = build_generator(config.weak)
    strong = weak if config.strong == config.weak else build_generator(config.strong)
    return Engine(weak, strong, build_scorer(config.scorer), config.engine)
