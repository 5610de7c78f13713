"""``CachedScorer``: any step scorer behind the SQLite call cache (``trimroute.store``).

The scorer re-scores the whole history at each step, and the points of a threshold sweep share every
identical prefix, so most scorer calls of a sweep repeat. The key is the scorer's name and parameters,
the problem, and every step (text, role, token logprobs: all a scorer may read). A hit returns the
stored ``Scores`` unchanged, tokens included, so cost accounting does not depend on the cache.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from trimroute.scorers.base import Scorer
from trimroute.store import CallStore, request_key
from trimroute.types import Problem, Scores, Step

__all__ = ["CachedScorer"]


class CachedScorer:
    """Wraps ``inner``; identical (problem, steps) are scored once. Counters go to ``store.stats["scorer"]``."""

    def __init__(self, inner: Scorer, store: CallStore, params: Mapping[str, Any] | None = None) -> None:
        self.inner = inner
        self.name = inner.name
        self.store = store
        self.params = dict(params or {})

    def key(self, problem: Problem, steps: Sequence[Step]) -> str:
        return request_key(
            {
                "call": "score",
                "scorer": self.name,
                "params": self.params,
                "problem": [problem.text, problem.answer],
                "steps": [
                    [s.text, s.role, list(s.token_logprobs) if s.token_logprobs is not None else None] for s in steps
                ],
            }
        )

    async def score(self, problem: Problem, steps: Sequence[Step]) -> Scores:
        async def call() -> dict[str, Any]:
            s = await self.inner.score(problem, steps)
            return {
                "values": list(s.values),
                "prompt_tokens": s.prompt_tokens,
                "generated_tokens": s.generated_tokens,
                "calls": s.calls,
            }

        d = await self.store.get_or_call("scorer", self.key(problem, steps), call)
        return Scores(tuple(d["values"]), d["prompt_tokens"], d["generated_tokens"], d["calls"])

    async def aclose(self) -> None:
        return None  # the engine it was wrapped into closes ``inner``
