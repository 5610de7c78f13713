"""Latency of step-level routing: does a routed step cost about a weak step in wall time? (issue 15)

The simulator's decisions (preset ``qwen1.5b-7b``) run through the real engine, with every backend behind a
latency model (``trimroute.testing.latency``): a generation costs ``per_call + tokens × per_token``, a
scoring call ``per_call``. Decode speeds are the Qwen2.5 Speed Benchmark's vLLM figures (vLLM 0.6.3, one
A100 80GB, BF16, batch 1, input length 1; QwenLM/Qwen2.5 docs/source/benchmark/speed_benchmark.rst):
Qwen2.5-1.5B-Instruct 183.33 tokens/s (5.45 ms/token), Qwen2.5-7B-Instruct 84.28 tokens/s (11.87 ms/token).
The per-call costs are assumptions, not measurements (flags change them): 20 ms per generation call (HTTP,
scheduling) and 60 ms per PRM call (a 7B forward pass over the whole history). Prefill is modelled apart,
with a prefix cache per server (``LatencyGenerator``): the prompt tokens a server has not seen cost 0.03 ms
each for the 1.5B and 0.1 ms for the 7B (~33k and ~10k tokens/s: assumptions of the order of compute-bound
BF16 prefill on one A100); simulated steps are short placeholder texts, so a prompt counts
``--problem-tokens`` plus ``--step-tokens`` per step it holds. Same problems, same seeds for every method:

- ``weak``, ``strong``: the references;
- ``thr_sequential``: TRIM-Thr with ``engine.speculate`` off, at the threshold that first reaches 95 % PGR
  on a 0.05 grid in the simulator (the best PGR if none does);
- ``thr_overlapped``: the same with the weak model's next step started while a proposal is scored;
- under ``shadow_prefill`` (beside ``methods``): ``thr_overlapped`` plus ``engine.shadow_prefill``, the strong
  server's prefix cache warmed with each step's regeneration prompt while the weak model writes it.

``overlap_identical`` says whether the two TRIM-Thr runs produced the same trajectories apart from timings
and speculative usage. Wall times are per problem, with ``--concurrency`` problems in flight, on a virtual
clock (aiotools' ``VirtualClock``: every sleep of the latency model is fast-forwarded and the engine's own
CPU time counts as zero), so the figures are those of the latency model alone, whatever else loads this
machine; the engine's own time per step is measured apart, in real time, on the plain simulator.

    python bench/latency.py --json bench/results/latency.json
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, TypeVar

import aiotools
import numpy as np

from trimroute import Engine, parse_policy
from trimroute.config import EngineConfig, sim_config
from trimroute.generators.base import Generator
from trimroute.runner import build_engine
from trimroute.sim.backend import simulated_problems
from trimroute.testing.latency import LatencyGenerator, LatencyScorer, without_timings
from trimroute.types import Generation, Problem, StepRequest, Trajectory

GRID = [round(0.05 * i, 2) for i in range(21)]
T = TypeVar("T")


async def on_virtual_clock(work: Awaitable[T]) -> T:
    with aiotools.VirtualClock().patch_loop():
        return await work


@dataclasses.dataclass(frozen=True)
class Timed:
    trajectory: Trajectory
    wall_s: float  # on the event loop's clock (virtual in this benchmark)
    first_step_s: float


async def route_all(engine: Engine, problems: list, spec: str) -> list[Trajectory]:
    out = {t.problem.id: t async for t in engine.run(problems, parse_policy(spec))}
    return [out[p.id] for p in problems]


async def timed_all(engine: Engine, problems: list, spec: str, concurrency: int) -> list[Timed]:
    """Each problem's wall time and time to its first accepted step, on the loop's clock."""
    loop, slots, policy = asyncio.get_running_loop(), asyncio.Semaphore(concurrency), parse_policy(spec)

    async def one(problem: Problem) -> Timed:
        async with slots:
            start, first = loop.time(), []
            t = await engine.solve(problem, policy, on_step=lambda *_: first.append(loop.time() - start))
            return Timed(t, loop.time() - start, first[0] if first else loop.time() - start)

    return list(await asyncio.gather(*(one(p) for p in problems)))


@dataclasses.dataclass(eq=False)
class PromptSized:
    """``inner``'s answers with the prompt tokens of a real chat: the problem's plus a step's per step."""

    inner: Generator
    problem_tokens: int
    step_tokens: int
    model: str = ""

    def __post_init__(self) -> None:
        self.model = self.inner.model

    async def generate_step(self, request: StepRequest) -> Generation:
        generation = await self.inner.generate_step(request)
        prompt_tokens = self.problem_tokens + request.n_steps * self.step_tokens
        return dataclasses.replace(generation, prompt_tokens=prompt_tokens)

    async def aclose(self) -> None:
        await self.inner.aclose()


def accuracy(ts: list[Trajectory]) -> float:
    return float(np.mean([t.final_answer == "correct" for t in ts]))


async def main(args: argparse.Namespace) -> dict[str, Any]:
    problems = simulated_problems(args.problems, seed=args.seed)
    # a server batches concurrent calls: no backend bound below the problems in flight
    roles = {role: args.concurrency for role in ("weak", "strong", "scorer")}
    engine = EngineConfig(concurrency=args.concurrency, backend_concurrency=roles, prompt="trim-v0")
    config = sim_config(args.preset, engine)

    # the threshold: plain simulator, no latency
    plain = build_engine(config)
    started = time.perf_counter()
    plain_thr = await route_all(plain, problems, "thr:0.5")
    engine_ms = 1e3 * (time.perf_counter() - started) / sum(len(t.steps) + len(t.discarded) for t in plain_thr)
    r = {spec: accuracy(await route_all(plain, problems, spec)) for spec in ("weak", "strong")}
    pgr = {}
    for k in GRID:
        pgr[k] = (accuracy(await route_all(plain, problems, f"thr:{k:g}")) - r["weak"]) / (r["strong"] - r["weak"])
    await plain.aclose()
    reached = [k for k in GRID if pgr[k] >= 0.95]
    k = reached[0] if reached else max(GRID, key=lambda x: pgr[x])
    print(f"threshold k = {k:g}: PGR {pgr[k]:.1%} ({'first to reach 95 %' if reached else 'none reaches 95 %'})")

    def slowed(speculate: bool, shadow: bool = False) -> Engine:
        rules = dataclasses.replace(config.engine, speculate=speculate, shadow_prefill=shadow)
        base = build_engine(dataclasses.replace(config, engine=rules))

        def model(generator: Generator, role: str) -> LatencyGenerator:
            sized = PromptSized(generator, args.problem_tokens, args.step_tokens)
            per_call, per_token, per_prompt_token = (
                getattr(args, f"{role}_{x}_ms") / 1e3 for x in ("call", "token", "prompt_token")
            )
            return LatencyGenerator(sized, per_call, per_token, per_prompt_token_s=per_prompt_token)

        scorer = LatencyScorer(base.scorer, args.scorer_call_ms / 1e3) if base.scorer else None
        return Engine(model(base.weak, "weak"), model(base.strong, "strong"), scorer, base.config)

    runs = {}
    for name, spec, speculate, shadow in (
        ("weak", "weak", False, False),
        ("strong", "strong", False, False),
        ("thr_sequential", f"thr:{k:g}", False, False),
        ("thr_overlapped", f"thr:{k:g}", True, False),
        ("thr_overlapped_shadow_prefill", f"thr:{k:g}", True, True),
    ):
        slow = slowed(speculate, shadow)
        runs[name] = await timed_all(slow, problems, spec, args.concurrency)
        await slow.aclose()

    def summary(name: str, timed: list[Timed]) -> dict[str, Any]:
        ts = [x.trajectory for x in timed]
        return {
            "name": name,
            "accuracy": accuracy(ts),
            "strong_tokens": float(np.mean([t.strong_tokens for t in ts])),
            "p50_wall_s": float(np.percentile([x.wall_s for x in timed], 50)),
            "p95_wall_s": float(np.percentile([x.wall_s for x in timed], 95)),
            "first_step_s": float(np.percentile([x.first_step_s for x in timed], 50)),
        }

    shadowed = runs.pop("thr_overlapped_shadow_prefill")
    methods = [summary(name, ts) for name, ts in runs.items()]
    shadow_row = summary("thr_overlapped_shadow_prefill", shadowed)

    def same(a: list[Timed], b: list[Timed]) -> bool:
        return [without_timings(x.trajectory) for x in a] == [without_timings(x.trajectory) for x in b]

    identical = same(runs["thr_sequential"], runs["thr_overlapped"])
    by = {m["name"]: m for m in methods}
    for m in (*methods, shadow_row):
        print(
            f"{m['name']:>29}  acc {m['accuracy']:.1%}  strong tok {m['strong_tokens']:6.1f}  "
            f"p50 {m['p50_wall_s']:6.2f} s  p95 {m['p95_wall_s']:6.2f} s  first step {m['first_step_s']:.2f} s  "
            f"p50 / weak {m['p50_wall_s'] / by['weak']['p50_wall_s']:.2f}×  "
            f"/ strong {m['p50_wall_s'] / by['strong']['p50_wall_s']:.2f}×"
        )
    thrown = [x.trajectory.usage.speculative for x in runs["thr_overlapped"]]
    print(
        f"overlap identical: {identical}; thrown-away speculative weak calls per problem "
        f"{sum(u.calls for u in thrown) / len(problems):.2f} ({sum(u.generated_tokens for u in thrown)} tokens "
        "known: a call cancelled in flight has none)"
    )
    print(f"engine + simulated backends, real CPU time per step (thr:0.5, no latency): {engine_ms:.3f} ms")
    prefill = [x.trajectory.usage.prefill for x in shadowed]
    shadowing = {
        **shadow_row,
        "identical": same(runs["thr_overlapped"], shadowed),
        "prefill_calls": sum(u.calls for u in prefill) / len(problems),
        "prefill_prompt_tokens": sum(u.prompt_tokens for u in prefill) / len(problems),
    }
    print(
        f"shadow prefill: identical {shadowing['identical']}; {shadowing['prefill_calls']:.2f} prefill calls and "
        f"{shadowing['prefill_prompt_tokens']:.0f} strong prompt tokens per problem"
    )
    return {"methods": methods, "overlap_identical": identical, "shadow_prefill": shadowing}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path, required=True, help="where to write the result")
    ap.add_argument("--preset", default="qwen1.5b-7b")
    ap.add_argument("--problems", type=int, default=500)
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--weak-token-ms", type=float, default=1000 / 183.33)
    ap.add_argument("--strong-token-ms", type=float, default=1000 / 84.28)
    ap.add_argument("--weak-call-ms", type=float, default=20.0)
    ap.add_argument("--strong-call-ms", type=float, default=20.0)
    ap.add_argument("--scorer-call-ms", type=float, default=60.0)
    ap.add_argument("--weak-prompt-token-ms", type=float, default=0.03)
    ap.add_argument("--strong-prompt-token-ms", type=float, default=0.1)
    ap.add_argument("--problem-tokens", type=int, default=120, help="prompt tokens before the first step")
    ap.add_argument("--step-tokens", type=int, default=62, help="prompt tokens per step in the pre-fill")
    arguments = ap.parse_args()
    result = asyncio.run(on_virtual_clock(main(arguments)))
    arguments.json.parent.mkdir(parents=True, exist_ok=True)
    arguments.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written {arguments.json}")
