"""``CachedGenerator``: any generator behind the SQLite call cache (``trimroute.store``).

The key is the exact request — model, every message byte-exact, max_tokens, stop strings, logprobs,
seed — plus the backend's sampling parameters. The engine seeds each call from its exact prefix
(``engine.call_seed``), so the points of a sweep share every identical prefix and only the first one
pays for it. A hit returns the stored ``Generation`` unchanged, tokens and latency included: cost
accounting in the trajectory does not depend on the cache; hits are counted in ``store.stats``.
Requests without a seed are sampled fresh every time and never cached (they are meant to differ).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from trimroute.generators.base import Generator
from trimroute.store import CallStore, request_key
from trimroute.types import FinishReason, Generation, StepRequest

__all__ = ["CachedGenerator", "generation_from_dict", "generation_to_dict"]


def generation_to_dict(gen: Generation) -> dict[str, Any]:
    return {
        "text": gen.text,
        "prompt_tokens": gen.prompt_tokens,
        "generated_tokens": gen.generated_tokens,
        "finish_reason": gen.finish_reason.value,
        "token_logprobs": list(gen.token_logprobs) if gen.token_logprobs is not None else None,
        "latency_s": gen.latency_s,
    }


def generation_from_dict(d: Mapping[str, Any]) -> Generation:
    lp = d["token_logprobs"]
    return Generation(
        text=d["text"],
        prompt_tokens=d["prompt_tokens"],
        generated_tokens=d["generated_tokens"],
        finish_reason=FinishReason(d["finish_reason"]),
        token_logprobs=tuple(lp) if lp is not None else None,
        latency_s=d["latency_s"],
    )


class CachedGenerator:
    """Wraps ``inner``; identical seeded requests are answered once.

    Args:
        inner: the real generator.
        store: the call store (shared by every wrapper of a sweep).
        role: namespace of the hit/miss counters (``weak`` or ``strong``).
        params: what else changes the output (``config.identity`` of the backend): part of the key.

    It owns nothing: the engine it was wrapped into (``Engine.wrapped``) closes ``inner``.
    """

    def __init__(
        self,
        inner: Generator,
        store: CallStore,
        role: str,
        params: Mapping[str, Any] | None = None,
    ) -> None:
        self.inner = inner
        self.model = inner.model
        self.store = store
        self.role = role
        self.params = dict(params or {})

    def key(self, request: StepRequest) -> str:
        return request_key(
            {
                "call": "generate_step",
                "model": self.model,
                "params": self.params,
                "messages": [[m.role, m.content] for m in request.messages],
                "max_tokens": request.max_tokens,
                "stop": list(request.stop),
                "logprobs": request.logprobs,
                "seed": request.seed,
            }
        )

    async def generate_step(self, request: StepRequest) -> Generation:
        if request.seed is None:
            self.store.stats_for(self.role).misses += 1
            return await self.inner.generate_step(request)

        async def call() -> dict[str, Any]:
            return generation_to_dict(await self.inner.generate_step(request))

        return generation_from_dict(await self.store.get_or_call(self.role, self.key(request), call))

    async def aclose(self) -> None:
        return None
