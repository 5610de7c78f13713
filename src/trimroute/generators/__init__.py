"""Generator backends, registered by name (the ``kind`` of a ``BackendConfig``).

Each entry is a factory ``(BackendConfig) -> Generator``, imported lazily.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from trimroute.generators.base import Generator
from trimroute.registry import Registry

if TYPE_CHECKING:
    from trimroute.config import BackendConfig

__all__ = ["GENERATORS", "Generator", "build_generator"]

GENERATORS: Registry[Generator] = Registry("generator")
GENERATORS.register("openai", "trimroute.generators.openai_compat:OpenAIGenerator")
GENERATORS.register("llamacpp", "trimroute.generators.llamacpp:LlamaCppGenerator")
GENERATORS.register("sim", "trimroute.sim.backend:build_sim_generator")


def build_generator(config: BackendConfig) -> Generator:
    return GENERATORS.create(config.kind, config)
