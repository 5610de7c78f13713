"""Speculative continuation changes no trajectory, only how soon it is done (issue 15)."""

from __future__ import annotations

import dataclasses
import time

import pytest

from trimroute import Engine, EngineConfig, Problem, parse_policy
from trimroute.config import sim_config
from trimroute.runner import build_engine
from trimroute.sim.backend import simulated_problems
from trimroute.testing import ScriptedGenerator, ScriptedScorer
from trimroute.testing.latency import LatencyGenerator, LatencyScorer, without_timings

POLICIES = ["weak", "strong", "random:0.3", "thr:0.5", "thr:0.8", "pomdp:preset=qwen1.5b-7b,lam=2e-3"]


def slowed(engine: Engine, speculate: bool) -> Engine:
    """The engine's backends behind a latency model (weak 4 ms/token, strong 12 ms/token, scorer 30 ms)."""
    return Engine(
        LatencyGenerator(engine.weak, 0.002, 0.0004),
        LatencyGenerator(engine.strong, 0.002, 0.0012),
        LatencyScorer(engine.scorer, 0.003) if engine.scorer is not None else None,
        dataclasses.replace(engine.config, speculate=speculate, concurrency=16),
    )


@pytest.mark.parametrize("spec", POLICIES)
async def test_the_simulator_routes_identically_with_and_without_speculation(spec: str) -> None:
    problems = simulated_problems(40, seed=7)
    runs = {}
    for speculate in (False, True):
        engine = slowed(build_engine(sim_config("qwen1.5b-7b")), speculate)
        runs[speculate] = sorted(
            [t async for t in engine.run(problems, parse_policy(spec))], key=lambda t: t.problem.id
        )
        await engine.aclose()
    assert [without_timings(t) for t in runs[True]] == [without_timings(t) for t in runs[False]]
    assert all(t.usage.speculative.generated_tokens == 0 for t in runs[False])
    if spec.startswith(("thr", "pomdp")):  # regenerations threw speculative steps away, counted apart
        assert sum(t.usage.speculative.calls for t in runs[True]) > 0
        assert sum(t.escalations for t in runs[True]) > 0


async def test_speculation_hides_the_scorer_behind_the_next_weak_step() -> None:
    weak = ScriptedGenerator("weak", ["a = 1", "b = 2", "c = 3", "so \\boxed{3}"])
    strong = ScriptedGenerator("strong", ["x"])
    base = Engine(weak, strong, ScriptedScorer(), EngineConfig())
    times, results = {}, {}
    for speculate in (False, True):
        engine = dataclasses.replace(base.config, speculate=speculate)
        slow = Engine(LatencyGenerator(weak, 0.05, 0.0), LatencyGenerator(strong, 0.05, 0.0),
                      LatencyScorer(ScriptedScorer(), 0.05), engine)  # fmt: skip
        t0 = time.perf_counter()
        results[speculate] = await slow.solve(Problem("p", "q"), parse_policy("thr:0.5"))
        times[speculate] = time.perf_counter() - t0
    assert without_timings(results[True]) == without_timings(results[False])
    # sequential: 4 weak + 4 scorer calls of 50 ms; speculative: the first 3 scorings overlap the next step
    assert times[False] == pytest.approx(0.40, abs=0.06) and times[True] == pytest.approx(0.25, abs=0.06)
    timing = results[True].timing
    assert set(timing) == {"first_step_s", "weak_s", "strong_s", "scorer_s", "engine_s"}
    assert timing["scorer_s"] == pytest.approx(0.2, abs=0.04) and timing["weak_s"] < 0.1
    assert results[True].timing["first_step_s"] == pytest.approx(0.1, abs=0.04)  # proposal + its score


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
