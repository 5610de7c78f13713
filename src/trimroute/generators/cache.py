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

from trimroute.engine import Engine
from trimroute.generators.base import Generator
from trimroute.scorers.cache import CachedScorer
from trimroute.store import CallStore, request_key
from trimroute.types import FinishReason, Generation, StepRequest

__all__ = ["CachedGenerator", "cached_engine", "generation_from_dict", "generation_to_dict"]

# Fields of a backend config that change how a request is sent, never what comes back: not part of the key.
TRANSPORT_FIELDS = frozenset({"base_url", "api_key_env", "timeout_s", "max_retries"})


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
        params: what else changes the output (temperature, top_p, chat template, ...): part of the key.
        close_inner: whether ``aclose`` closes ``inner`` (False when another wrapper owns it).
    """

    def __init__(
        self,
        inner: Generator,
        store: CallStore,
        role: str,
        params: Mapping[str, Any] | None = None,
        close_inner: bool = True,
    ) -> None:
        self.inner = inner
        self.close_inner = close_inner
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
        if self.close_inner:
            await self.inner.aclose()


def cached_engine(engine: Engine, store: CallStore, params: Mapping[str, Mapping[str, Any]] | None = None) -> Engine:
    """A copy of ``engine`` whose weak, strong and scorer calls go through ``store``.

    ``params`` maps a role to what, besides the request, decides its output (e.g. the backend config
    without its transport fields, see ``TRANSPORT_FIELDS``).
    """
    params = params or {}
    weak = CachedGenerator(engine.weak, store, "weak", params.get("weak"))
    shared = engine.strong is engine.weak  # one backend object serving both roles is closed once
    strong = CachedGenerator(engine.strong, store, "strong", params.get("strong"), close_inner=not shared)
    scorer = CachedScorer(engine.scorer, store, params.get("scorer")) if engine.scorer is not None else None
    return Engine(weak, strong, scorer, engine.config)
