"""Speculative continuation and shadow prefill change no trajectory, only how soon it is done (issue 15)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Sequence
from typing import TypeVar

import pytest

from trimroute import Engine, EngineConfig, Problem, parse_policy
from trimroute.config import sim_config
from trimroute.generators.base import Generator
from trimroute.runner import build_engine
from trimroute.scorers.base import Scorer
from trimroute.sim.backend import simulated_problems
from trimroute.testing import ScriptedGenerator, ScriptedScorer, count_tokens
from trimroute.testing.latency import LatencyGenerator, LatencyScorer, without_timings
from trimroute.types import Generation, Scores, Step, StepRequest

T = TypeVar("T")

POLICIES = ["weak", "strong", "random:0.3", "thr:0.5", "thr:0.8", "pomdp:preset=qwen1.5b-7b,lam=2e-3"]


def slowed(engine: Engine, speculate: bool, shadow: bool = False) -> Engine:
    """The engine's backends behind a latency model (weak 4 ms/token, strong 12 ms/token, scorer 30 ms)."""
    return Engine(
        LatencyGenerator(engine.weak, 0.002, 0.0004),
        LatencyGenerator(engine.strong, 0.002, 0.0012),
        LatencyScorer(engine.scorer, 0.003) if engine.scorer is not None else None,
        dataclasses.replace(engine.config, speculate=speculate, shadow_prefill=shadow, concurrency=16),
    )


@pytest.mark.parametrize("spec", POLICIES)
async def test_the_simulator_routes_identically_with_and_without_overlap(spec: str) -> None:
    problems = simulated_problems(40, seed=7)
    runs = {}
    for speculate, shadow in ((False, False), (True, False), (False, True), (True, True)):
        engine = slowed(build_engine(sim_config("qwen1.5b-7b")), speculate, shadow)
        runs[speculate, shadow] = sorted(
            [t async for t in engine.run(problems, parse_policy(spec))], key=lambda t: t.problem.id
        )
        await engine.aclose()
    sequential = [without_timings(t) for t in runs[False, False]]
    assert all([without_timings(t) for t in ts] == sequential for ts in runs.values())
    assert all(t.usage.speculative.generated_tokens == 0 for t in runs[False, False])
    assert all(t.usage.prefill.calls == 0 for t in (*runs[False, False], *runs[True, False]))
    routed = spec.startswith(("thr", "pomdp", "random"))
    # a shadow prefill goes out before every routed weak step; weak-only and strong-only never regenerate
    assert (sum(t.usage.prefill.calls for t in runs[False, True]) > 0) == routed
    if spec.startswith(("thr", "pomdp")):  # regenerations threw speculative steps away, counted apart
        assert sum(t.usage.speculative.calls for t in runs[True, False]) > 0
        assert sum(t.escalations for t in runs[True, False]) > 0


async def test_a_shadow_prefill_sends_the_regenerations_prompt_to_the_strong_model() -> None:
    weak = ScriptedGenerator("weak", ["a = 1", "b = wrong", "so \\boxed{2}"])
    strong = ScriptedGenerator("strong", ["b = 2"])
    # the weak model takes 20 ms a step: the shadow prefill runs meanwhile, as it would against a server
    slow_weak = LatencyGenerator(weak, 0.02, 0.0)
    engine = Engine(slow_weak, strong, ScriptedScorer(), EngineConfig(speculate=False, shadow_prefill=True))
    t = await engine.solve(Problem("p", "q"), parse_policy("thr:0.5"))
    assert [s.role for s in t.steps] == ["weak", "strong", "weak"]
    prefills = [r for r in strong.requests if r.max_tokens == 1]
    (rewrite,) = [r for r in strong.requests if r.max_tokens > 1]
    assert [r.n_steps for r in prefills] == [0, 1, 2]  # one as each weak step is written
    assert rewrite.messages in [r.messages for r in prefills]  # the regeneration found its prompt warmed
    assert t.usage.prefill.calls == 3 and t.usage.prefill.prompt_tokens == sum(
        sum(count_tokens(m.content) for m in r.messages) for r in prefills
    )
    assert t.usage.strong.calls == 1 and t.usage.strong.generated_tokens == t.steps[1].generated_tokens


class Intervals:
    """Records when each wrapped call starts and ends (event-loop time), by role."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, float, float]] = []

    async def timed(self, role: str, call: Awaitable[T]) -> T:
        loop = asyncio.get_running_loop()
        start = loop.time()
        try:
            return await call
        finally:
            self.calls.append((role, start, loop.time()))

    def overlaps(self) -> int:
        """How many (weak call, scorer call) pairs ran at the same time."""
        weak = [(a, b) for r, a, b in self.calls if r == "weak"]
        scored = [(a, b) for r, a, b in self.calls if r == "scorer"]
        return sum(1 for wa, wb in weak for sa, sb in scored if wa < sb and sa < wb)


class LoggedGenerator:
    def __init__(self, inner: Generator, log: Intervals) -> None:
        self.inner, self.log, self.model = inner, log, inner.model

    async def generate_step(self, request: StepRequest) -> Generation:
        return await self.log.timed("weak", self.inner.generate_step(request))

    async def aclose(self) -> None:
        await self.inner.aclose()


class LoggedScorer:
    def __init__(self, inner: Scorer, log: Intervals) -> None:
        self.inner, self.log, self.name = inner, log, inner.name

    async def score(self, problem: Problem, steps: Sequence[Step]) -> Scores:
        return await self.log.timed("scorer", self.inner.score(problem, steps))

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_speculation_hides_the_scorer_behind_the_next_weak_step() -> None:
    weak = ScriptedGenerator("weak", ["a = 1", "b = 2", "c = 3", "so \\boxed{3}"])
    strong = ScriptedGenerator("strong", ["x"])
    base = Engine(weak, strong, ScriptedScorer(), EngineConfig())
    logs, results = {}, {}
    for speculate in (False, True):
        engine = dataclasses.replace(base.config, speculate=speculate)
        logs[speculate] = log = Intervals()
        slow = Engine(LoggedGenerator(LatencyGenerator(weak, 0.05, 0.0), log), LatencyGenerator(strong, 0.05, 0.0),
                      LoggedScorer(LatencyScorer(ScriptedScorer(), 0.05), log), engine)  # fmt: skip
        results[speculate] = await slow.solve(Problem("p", "q"), parse_policy("thr:0.5"))
    assert without_timings(results[True]) == without_timings(results[False])
    # sequential: 4 weak and 4 scorer calls one after another; speculative: the next weak step is written while
    # each of the first 3 steps is scored (the 4th is final, nothing follows it). Ordering, not wall time: the
    # count holds however loaded the machine is.
    assert [len(log.calls) for log in logs.values()] == [8, 8]
    assert logs[False].overlaps() == 0 and logs[True].overlaps() == 3
    timing = results[True].timing
    assert set(timing) == {"first_step_s", "weak_s", "strong_s", "scorer_s", "engine_s"}
    # lower bounds only (the latency model sleeps at least this long): 4 scorings of 50 ms; the first step
    # waits for its proposal and its score
    assert timing["scorer_s"] >= 0.2 and timing["first_step_s"] >= 0.1


async def test_a_failing_scorer_cancels_the_speculative_step() -> None:
    class Failing(ScriptedScorer):
        async def score(self, problem, steps):  # type: ignore[no-untyped-def]
            raise RuntimeError("scorer down")

    script = ScriptedGenerator("weak", ["a", "b", "c"])
    weak = LatencyGenerator(script, 0.05, 0.0)
    engine = Engine(weak, weak, Failing(), EngineConfig())
    with pytest.raises(RuntimeError, match="scorer down"):
        await engine.solve(Problem("p", "q"), parse_policy("thr:0.5"))
    assert len(script.requests) <= 2  # the proposal and at most the cancelled speculative call
