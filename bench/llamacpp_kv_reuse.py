"""KV-cache reuse of the in-process llama.cpp generator across the steps of one problem.

    python bench/llamacpp_kv_reuse.py [--problems 5]

For each GSM8K problem (its reference solution lines are the steps), the prompt for the last step is
evaluated (one generated token) twice: right after the prompt of the step before it (warm: the cached
prefix is reused) and right after another problem's prompt (cold: the baseline, measured in the same
run). Prints the tokens reused and the cold/warm time ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
from pathlib import Path

from trimroute import prompts
from trimroute.config import BackendConfig
from trimroute.generators.llamacpp import LlamaCppGenerator
from trimroute.testing.llama_server import smollm2_path
from trimroute.types import Problem

GSM8K = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "gsm8k_test.jsonl"


async def main(n: int) -> None:
    gen = LlamaCppGenerator(
        BackendConfig(kind="llamacpp", temperature=0.0, options={"model_path": str(smollm2_path()), "n_threads": 2})
    )
    records = [json.loads(line) for line in GSM8K.read_text().splitlines()[: n + 1]]
    problems = [Problem(f"gsm8k-{i}", r["question"]) for i, r in enumerate(records)]
    solutions = {
        p.id: [s for s in r["answer"].split("\n") if not s.startswith("####")]
        for p, r in zip(problems, records, strict=True)
    }
    warm, cold, reused, prompt = [], [], [], []
    for problem, other in zip(problems[:n], problems[1 : n + 1], strict=True):
        steps = solutions[problem.id]
        last = prompts.step_request(problem, steps, max_tokens=1, seed=0)
        before = prompts.step_request(problem, steps[:-1], max_tokens=1, seed=0)
        await gen.generate_step(before)
        out = await gen.generate_step(last)
        warm.append(out.latency_s)
        reused.append(gen.reused_tokens)
        prompt.append(out.prompt_tokens)
        await gen.generate_step(prompts.step_request(other, [], max_tokens=1, seed=0))
        cold.append((await gen.generate_step(last)).latency_s)
    await gen.aclose()
    print(
        f"{n} problems: prompt {statistics.mean(prompt):.0f} tokens, {statistics.mean(reused):.0f} reused from the "
        f"previous step; warm {statistics.median(warm) * 1e3:.0f} ms vs cold {statistics.median(cold) * 1e3:.0f} ms "
        f"(median), cold/warm = {statistics.median(cold) / statistics.median(warm):.1f}x"
    )


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--problems", type=int, default=5)
    asyncio.run(main(ap.parse_args().problems))
