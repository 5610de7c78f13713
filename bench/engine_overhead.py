"""The engine's own time per step, and the wall time of 5 GSM8K problems against a llama.cpp server.

    python bench/engine_overhead.py [--problems 2000] [--gsm8k 5] [--skip-server]

1. Overhead: the engine routes ``--problems`` scripted problems (``trimroute.testing`` fakes, zero
   latency). Baseline measured in the same run: the same fake calls made directly, without the engine.
   Engine time per step = (engine run - direct calls) / steps; the ratio is engine run / direct calls.
2. Real run: starts ``python -m llama_cpp.server`` with SmolLM2-135M, runs ``--gsm8k`` problems of
   ``../shared/data/gsm8k_test.jsonl`` one at a time (weak, strong and judge all on that server, TRIM-Thr
   0.5, ``--max-step-tokens`` per step and 4x that per solution) and reports the wall time and the time
   not spent waiting on the server, per step.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import Progress

from trimroute import prompts
from trimroute.config import BackendConfig, ScorerConfig
from trimroute.data.datasets import load_dataset
from trimroute.engine import Engine, EngineConfig
from trimroute.generators.openai_compat import OpenAIGenerator
from trimroute.policies import parse_policy
from trimroute.scorers.judge import JudgeScorer
from trimroute.testing import ScriptedGenerator, ScriptedScorer
from trimroute.testing.llama_server import LlamaServer, smollm2_path
from trimroute.types import Problem, Scores, Step, StepRequest

GSM8K = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "gsm8k_test.jsonl"
WEAK = ["a = 1", "wrong b = 3", "c = 2", "d = 4", "so \\boxed{2}"]
STRONG = ["b = 1"] * 5


class Timed:
    """Wraps a generator or scorer and adds up the time spent awaiting it."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.model = getattr(inner, "model", "")
        self.name = getattr(inner, "name", "")
        self.waited = 0.0

    async def generate_step(self, request: StepRequest) -> Any:
        t0 = time.perf_counter()
        try:
            return await self.inner.generate_step(request)
        finally:
            self.waited += time.perf_counter() - t0

    async def score(self, problem: Problem, steps: list[Step]) -> Scores:
        t0 = time.perf_counter()
        try:
            return await self.inner.score(problem, steps)
        finally:
            self.waited += time.perf_counter() - t0

    async def aclose(self) -> None:
        await self.inner.aclose()


async def overhead(n: int) -> dict[str, float]:
    problems = [Problem(f"p{i}", f"problem {i}") for i in range(n)]
    engine = Engine(ScriptedGenerator("weak", WEAK), ScriptedGenerator("strong", STRONG), ScriptedScorer(),
                    EngineConfig(concurrency=64))  # fmt: skip
    steps = calls = 0
    t0 = time.perf_counter()
    async for t in engine.run(problems, parse_policy("thr:0.5")):
        steps += len(t.steps)
        calls += t.usage.weak.calls + t.usage.strong.calls
    engine_s = time.perf_counter() - t0
    # baseline: the same fake calls without the engine
    weak, strong, scorer = ScriptedGenerator("weak", WEAK), ScriptedGenerator("strong", STRONG), ScriptedScorer()
    problem = problems[0]
    t0 = time.perf_counter()
    for _ in range(n):
        history: list[Step] = []
        for i, text in enumerate(WEAK):
            request = prompts.step_request(problem, [s.text for s in history], max_tokens=2048, seed=i)
            gen = await weak.generate_step(request)
            step = Step(gen.text, "weak", gen.generated_tokens)
            await scorer.score(problem, [*history, step])
            if "wrong" in text:
                gen = await strong.generate_step(request)
                step = Step(gen.text, "strong", gen.generated_tokens)
            history.append(step)
    direct_s = time.perf_counter() - t0
    return {"steps": steps, "engine_s": engine_s, "direct_s": direct_s,
            "per_step_us": (engine_s - direct_s) / steps * 1e6, "ratio": engine_s / direct_s}  # fmt: skip


async def real_run(server: LlamaServer, n: int, max_step_tokens: int) -> dict[str, float]:
    problems = load_dataset(str(GSM8K), limit=n)
    cfg = BackendConfig(kind="openai", model=server.model, base_url=server.base_url)
    weak, strong = Timed(OpenAIGenerator(cfg)), Timed(OpenAIGenerator(cfg))
    judge = Timed(JudgeScorer(ScorerConfig(kind="judge", model=server.model, base_url=server.base_url)))
    rules = EngineConfig(concurrency=1, max_step_tokens=max_step_tokens, max_solution_tokens=4 * max_step_tokens)
    engine = Engine(weak, strong, judge, rules)
    steps = strong_steps = 0
    t0 = time.perf_counter()
    with Progress() as progress:
        task = progress.add_task("GSM8K on llama.cpp", total=n)
        async for t in engine.run(problems, parse_policy("thr:0.5")):
            steps += len(t.steps)
            strong_steps += sum(s.role == "strong" for s in t.steps)
            progress.console.log(
                f"{t.problem.id}: {len(t.steps)} steps, {t.escalations} strong, {t.stop_reason.value}, "
                f"{t.wall_time_s:.1f}s"
            )
            progress.advance(task)
    wall = time.perf_counter() - t0
    await engine.aclose()
    waited = weak.waited + strong.waited + judge.waited
    return {"problems": n, "steps": steps, "strong_steps": strong_steps, "wall_s": wall, "waited_s": waited,
            "own_per_step_ms": (wall - waited) / max(steps, 1) * 1e3}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--problems", type=int, default=2000)
    ap.add_argument("--gsm8k", type=int, default=5)
    ap.add_argument("--max-step-tokens", type=int, default=128)
    ap.add_argument("--skip-server", action="store_true")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so that a timeout still stops the server
    console = Console()
    o = asyncio.run(overhead(args.problems))
    console.print(
        f"scripted: {o['steps']:.0f} steps, engine {o['engine_s']:.3f}s vs direct calls {o['direct_s']:.3f}s "
        f"(ratio {o['ratio']:.2f}x) -> engine overhead {o['per_step_us']:.0f} µs/step"
    )
    if args.skip_server:
        return
    with LlamaServer(smollm2_path()) as server:
        r = asyncio.run(real_run(server, args.gsm8k, args.max_step_tokens))
    console.print(
        f"llama.cpp SmolLM2: {r['problems']} GSM8K problems, {r['steps']} steps ({r['strong_steps']} strong), "
        f"wall {r['wall_s']:.1f}s, waiting on the server {r['waited_s']:.1f}s, "
        f"engine's own time {r['own_per_step_ms']:.2f} ms/step"
    )


if __name__ == "__main__":
    main()
