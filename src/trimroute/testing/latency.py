"""Backends that take time: any generator or scorer behind a stated latency model (tests and
``bench/latency.py``).

A generation costs ``per_call_s + generated_tokens * per_token_s`` plus ``per_prompt_token_s`` for each
prompt token its server has not seen yet: a prefix cache as vLLM and SGLang keep one, by the longest
earlier prompt of the same chat that this one extends (a prompt counts as seen once its call is done).
A scoring call costs ``per_call_s``. Both sleep on the event loop, so concurrent calls overlap as they would
on a server that batches them. ``scale`` shrinks every figure to run a benchmark faster; ratios between
methods do not change.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from trimroute.generators.base import Generator
from trimroute.scorers.base import Scorer
from trimroute.types import Generation, Message, Problem, Scores, Step, StepRequest, Trajectory

__all__ = ["LatencyGenerator", "LatencyScorer", "without_timings"]


def without_timings(t: Trajectory) -> dict[str, Any]:
    """A trajectory's JSON without what may differ between runs of the same calls: wall times, per-step
    latencies, speculative and shadow-prefill usage (``engine.speculate`` and ``engine.shadow_prefill`` must
    change nothing else)."""
    d = t.to_dict()
    d.pop("wall_time_s"), d.pop("timing"), d["usage"].pop("speculative"), d["usage"].pop("prefill")
    for step in (*d["steps"], *d["discarded"]):
        step.pop("latency_s")
    return d


@dataclass(eq=False)
class LatencyGenerator:
    """``inner``'s answers, delivered after ``per_call_s + tokens * per_token_s`` and the prefill of the
    prompt's uncached share at ``per_prompt_token_s`` (times ``scale``)."""

    inner: Generator
    per_call_s: float
    per_token_s: float
    scale: float = 1.0
    per_prompt_token_s: float = 0.0
    model: str = ""
    _seen: dict[tuple[Message, ...], list[str]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.model = self.inner.model

    def _uncached(self, request: StepRequest, prompt_tokens: int) -> float:
        """Prompt tokens past the longest finished prompt of the same chat that this one extends (the
        system and user messages are cached once any prompt of the chat was; tokens pro rata to characters)."""
        seen = self._seen.get(request.messages[:-1])
        if not seen:
            return float(prompt_tokens)
        total = sum(len(m.content) for m in request.messages)
        reused = max((len(p) for p in seen if request.prefill.startswith(p)), default=0)
        cached = total - len(request.prefill) + reused
        return prompt_tokens * (1.0 - cached / total) if total else 0.0

    async def generate_step(self, request: StepRequest) -> Generation:
        generation = await self.inner.generate_step(request)
        delay = self.per_call_s + generation.generated_tokens * self.per_token_s
        if self.per_prompt_token_s:
            delay += self._uncached(request, generation.prompt_tokens) * self.per_prompt_token_s
        await asyncio.sleep(delay * self.scale)
        self._seen.setdefault(request.messages[:-1], []).append(request.prefill)  # in the cache once done
        return generation

    async def aclose(self) -> None:
        await self.inner.aclose()


@dataclass(eq=False)
class LatencyScorer:
    """``inner``'s scores, delivered after ``per_call_s`` (times ``scale``)."""

    inner: Scorer
    per_call_s: float
    scale: float = 1.0
    name: str = ""

    def __post_init__(self) -> None:
        self.name = self.inner.name

    async def score(self, problem: Problem, steps: Sequence[Step]) -> Scores:
        scores = await self.inner.score(problem, steps)
        await asyncio.sleep(self.per_call_s * self.scale)
        return scores

    async def aclose(self) -> None:
        await self.inner.aclose()
