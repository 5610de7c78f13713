"""Simulator steps per second through the one Engine (what RL training gets).

    python bench/simulator_speed.py [--problems 2000]

Baseline measured in the same run: the same engine with the scripted fakes of ``trimroute.testing`` (a
generator and scorer that do no work), i.e. the engine's own floor; the ratio is the simulator's overhead.
"""

from __future__ import annotations

import argparse
import asyncio
import time

from trimroute.engine import Engine, EngineConfig
from trimroute.policies import parse_policy
from trimroute.runner import simulated_engine
from trimroute.sim.backend import simulated_problems
from trimroute.testing import ScriptedGenerator, ScriptedScorer


async def steps_per_second(engine: Engine, spec: str, n: int) -> float:
    t0 = time.perf_counter()
    steps = 0
    async for t in engine.run(simulated_problems(n), parse_policy(spec)):
        steps += len(t.steps)
    return steps / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--problems", type=int, default=2000)
    args = ap.parse_args()
    script = ["step one", "step two", "step three", "step four", "step five", "step six", "step seven",
              "answer \\boxed{correct}"]  # fmt: skip  # 8 steps, like the simulator's mean length
    fake = Engine(ScriptedGenerator("w", script), ScriptedGenerator("s", script), ScriptedScorer(),
                  EngineConfig(concurrency=64))  # fmt: skip
    sim = simulated_engine("qwen1.5b-7b", seed=0)
    for spec in ("weak", "thr:0.5", "pomdp:preset=qwen1.5b-7b,lam=3e-4"):
        base = asyncio.run(steps_per_second(fake, spec, args.problems))
        rate = asyncio.run(steps_per_second(sim, spec, args.problems))
        print(f"{spec:40s} simulator {rate:8.0f} steps/s, scripted fakes {base:8.0f} steps/s, ratio {rate / base:.2f}")


if __name__ == "__main__":
    main()
