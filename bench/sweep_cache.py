"""Sweep cache saving, measured in one run: a 21-point threshold sweep through ``trim eval``'s runner and
call cache, against running weak-only, strong-only and each threshold point alone without a cache.

Backends are the scripted fakes of ``trimroute.testing`` behind a latency that grows with the tokens
written (a fixed cost per call plus a cost per token), so wall time reflects model calls, not Python.

    python bench/sweep_cache.py [--problems 20] [--points 21] [--call-ms 40] [--token-ms 2]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from trimroute import Engine, EngineConfig, Problem, parse_policy
from trimroute.eval.methods import parse_methods
from trimroute.eval.rundir import RunDir
from trimroute.eval.sweep import SweepOptions, finish_run, run_sweep
from trimroute.generators.base import Generator
from trimroute.runner import cached_engine
from trimroute.store import CallStore
from trimroute.testing import ScriptedGenerator, ScriptedScorer
from trimroute.types import Generation, Scores, Step, StepRequest

console = Console()


def _unit(text: str) -> float:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little") / 2**64


def _script(role: str):  # type: ignore[no-untyped-def]
    """Steps of 20-60 words; the 5th step (or an unlucky earlier one) gives the answer."""

    def write(request: StepRequest) -> str:
        n = request.prefill.count("\n\n") - 1
        u = _unit(f"{role}{request.seed}{request.prefill}")
        words = " ".join(["word"] * (20 + int(40 * u)))
        return f"step {n} {words} \\boxed{{{int(10 * u)}}}" if n >= 4 or u > 0.93 else f"step {n} {words}"

    return write


@dataclass
class Slow:
    """Adds a model-like latency to a generator and counts the calls that reach it."""

    inner: Generator
    call_s: float
    token_s: float
    calls: int = 0

    @property
    def model(self) -> str:
        return self.inner.model

    async def generate_step(self, request: StepRequest) -> Generation:
        self.calls += 1
        gen = await self.inner.generate_step(request)
        await asyncio.sleep(self.call_s + self.token_s * gen.generated_tokens)
        return gen

    async def aclose(self) -> None:
        return None


@dataclass
class SlowScorer:
    inner: ScriptedScorer
    call_s: float
    name: str = "scripted"
    calls: int = 0

    async def score(self, problem: Problem, steps: list[Step]) -> Scores:
        self.calls += 1
        await asyncio.sleep(self.call_s)
        return await self.inner.score(problem, steps)

    async def aclose(self) -> None:
        return None


def backends(args: argparse.Namespace) -> tuple[Slow, Slow, SlowScorer]:
    call_s, token_s = args.call_ms / 1000, args.token_ms / 1000
    weak = Slow(ScriptedGenerator("weak", _script("weak")), call_s, token_s)
    strong = Slow(ScriptedGenerator("strong", _script("strong")), call_s, token_s)
    scorer = SlowScorer(ScriptedScorer(score_fn=lambda s: _unit(s.text)), call_s)
    return weak, strong, scorer


def engine_of(weak: Slow, strong: Slow, scorer: SlowScorer) -> Engine:
    return Engine(weak, strong, scorer, EngineConfig(seed=0, concurrency=8))


async def main(args: argparse.Namespace) -> None:
    problems = [Problem(f"q{i}", f"Problem number {i}?", "7") for i in range(args.problems)]
    step = 1 / (args.points - 1)
    sweep_spec = f"thr:0,{step:g},...,1"
    specs = ["weak", "strong", *parse_methods([sweep_spec])[2].specs]

    # 1. every point alone, no cache
    weak, strong, scorer = backends(args)
    engine = engine_of(weak, strong, scorer)
    t0 = time.perf_counter()
    for spec in specs:
        async for _ in engine.run(problems, parse_policy(spec)):
            pass
    alone_s = time.perf_counter() - t0
    alone_calls = weak.calls + strong.calls + scorer.calls

    # 2. the same points as one sweep through the call cache
    weak, strong, scorer = backends(args)
    with tempfile.TemporaryDirectory() as tmp:
        store = CallStore(Path(tmp) / "cache.sqlite")
        t0 = time.perf_counter()
        results = await run_sweep(
            cached_engine(engine_of(weak, strong, scorer), store), problems, parse_methods([sweep_spec]),
            RunDir(Path(tmp) / "run"),
            setup={"dataset": "bench"}, store=store, options=SweepOptions(n_resamples=10),
        )  # fmt: skip
        sweep_s = time.perf_counter() - t0
        store.close()
        t0 = time.perf_counter()  # the sweep's share spent on metrics, report and plot (no model call)
        finish_run(RunDir(Path(tmp) / "run"), options=SweepOptions(n_resamples=10))
        report_s = time.perf_counter() - t0
    sweep_calls = weak.calls + strong.calls + scorer.calls
    assert sweep_calls == sum(results["calls"]["made"].values())

    table = Table(title=f"{len(specs)} points (weak, strong, {sweep_spec}) × {args.problems} problems")
    for col in ("run", "model + scorer calls", "wall s"):
        table.add_column(col, justify="left" if col == "run" else "right")
    table.add_row("each point alone, no cache", f"{alone_calls:,}", f"{alone_s:.1f}")
    table.add_row("one sweep, call cache", f"{sweep_calls:,}", f"{sweep_s:.1f}")
    table.add_row("saving (alone / sweep)", f"{alone_calls / sweep_calls:.1f}×", f"{alone_s / sweep_s:.1f}×")
    table.add_row("sweep cost in single runs", f"{sweep_calls / (alone_calls / len(specs)):.1f}×", "")
    console.print(table)
    console.print(
        f"latency model: {args.call_ms:g} ms per call + {args.token_ms:g} ms per generated token; "
        f"the sweep's wall time includes grading and {report_s:.1f} s of metrics, report and plot"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", type=int, default=20)
    parser.add_argument("--points", type=int, default=21)
    parser.add_argument("--call-ms", type=float, default=40.0)
    parser.add_argument("--token-ms", type=float, default=2.0)
    asyncio.run(main(parser.parse_args()))
