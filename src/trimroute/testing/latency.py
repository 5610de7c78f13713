"""Backends that take time: any generator or scorer behind a stated latency model (tests and
``bench/latency.py``).

A generation costs ``per_call_s + generated_tokens * per_token_s`` (prefill and queueing folded into the
per-call part), a scoring call ``per_call_s``; both sleep on the event loop, so concurrent calls overlap as
they would on a server that batches them. ``scale`` shrinks every figure to run a benchmark faster; ratios
between methods do not change.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from trimroute.generators.base import Generator
from trimroute.scorers.base import Scorer
from trimroute.types import Generation, Problem, Scores, Step, StepRequest, Trajectory

__all__ = ["LatencyGenerator", "LatencyScorer", "without_timings"]


def without_timings(t: Trajectory) -> dict[str, Any]:
    """A trajectory's JSON without what may differ between runs of the same calls: wall times, per-step
    latencies and speculative usage (``engine.speculate`` must change nothing else)."""
    d = t.to_dict()
    d.pop("wall_time_s"), d.pop("timing"), d["usage"].pop("speculative")
    for step in (*d["steps"], *d["discarded"]):
        step.pop("latency_s")
    return d


@dataclass(eq=False)
class LatencyGenerator:
    """``inner``'s answers, delivered after ``per_call_s + tokens * per_token_s`` (times ``scale``)."""

    inner: Generator
    per_call_s: float
    per_token_s: float
    scale: float = 1.0
    model: str = ""

    def __post_init__(self) -> None:
        self.model = self.inner.model

    async def generate_step(self, request: StepRequest) -> Generation:
        generation = await self.inner.generate_step(request)
        delay = self.per_call_s + generation.generated_tokens * self.per_token_s
        await asyncio.sleep(delay * self.scale)
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
