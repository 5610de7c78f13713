"""Prefix-cache locality across two replicas: problem affinity on vs off (least outstanding only).

    python bench/replicas.py [--problems 8] [--concurrency 8]

Two llama.cpp servers (SmolLM2-135M, ``--cache true``: a prefix cache of many prompts, as vLLM's automatic
prefix caching keeps) are the replicas of one ``openai`` generator. Each GSM8K problem replays TRIM's
access pattern: the request for step k pre-fills steps 1..k-1 (the reference solution's lines) and is sent
when step k-1's answer is back, with ``--concurrency`` problems in flight; one token is generated per
request, so the time is the prompt evaluation the prefix cache saves. Each mode starts on freshly started
servers. The servers log, per request, how many prompt tokens came from the cache (``N prefix-match hit``);
the bench prints each mode's cached share and wall time, and the affinity/no-affinity ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import tempfile
import time
from pathlib import Path
from typing import Any

from trimroute import prompts
from trimroute.config import BackendConfig
from trimroute.generators.openai_compat import OpenAIGenerator
from trimroute.testing.llama_server import LlamaServer, smollm2_path
from trimroute.types import Problem

GSM8K = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "gsm8k_test.jsonl"
HIT = re.compile(r"Llama\.generate: (\d+) prefix-match hit")


def gsm8k(n: int) -> list[tuple[Problem, list[str]]]:
    records = [json.loads(line) for line in GSM8K.read_text().splitlines()[:n]]
    return [
        (Problem(f"gsm8k-{i}", r["question"]), [s for s in r["answer"].split("\n") if not s.startswith("####")])
        for i, r in enumerate(records)
    ]


async def mode(affinity: bool, args: argparse.Namespace, logs: Path) -> dict[str, Any]:
    servers = [
        LlamaServer(smollm2_path(), log_path=logs / f"{affinity}-{i}.log", args=["--cache", "true"]) for i in range(2)
    ]
    for server in servers:
        server.start()
    try:
        urls = tuple(s.base_url for s in servers)
        gen = OpenAIGenerator(
            BackendConfig(model=servers[0].model, base_urls=urls, temperature=0.0, options={"affinity": affinity})
        )
        slots = asyncio.Semaphore(args.concurrency)
        prompt_tokens = 0

        async def solve(problem: Problem, steps: list[str]) -> None:
            nonlocal prompt_tokens
            async with slots:
                for k in range(len(steps) + 1):
                    out = await gen.generate_step(prompts.step_request(problem, steps[:k], max_tokens=1, seed=0))
                    prompt_tokens += out.prompt_tokens

        await gen.chat_template()  # looked up once, outside the timing
        t0 = time.perf_counter()
        await asyncio.gather(*(solve(p, s) for p, s in gsm8k(args.problems)))
        wall = time.perf_counter() - t0
        await gen.aclose()
    finally:
        for server in servers:
            server.stop()
    cached = sum(int(m) for s in servers for m in HIT.findall(s.log_path.read_text(errors="replace")))
    return {
        "affinity": affinity,
        "wall_s": round(wall, 2),
        "prompt_tokens": prompt_tokens,
        "cached_prompt_tokens": cached,
        "cached_share": round(cached / prompt_tokens, 3),
    }


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        off = await mode(False, args, Path(tmp))
        on = await mode(True, args, Path(tmp))
    for row in (off, on):
        print(json.dumps(row))
    ev_on, ev_off = (r["prompt_tokens"] - r["cached_prompt_tokens"] for r in (on, off))
    print(
        f"affinity on / off: prompt tokens evaluated {ev_on} / {ev_off} = {ev_on / ev_off:.2f}"
        f"; wall time {on['wall_s']:.1f} s / {off['wall_s']:.1f} s = {on['wall_s'] / off['wall_s']:.2f}"
    )


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--problems", type=int, default=8)
    ap.add_argument("--concurrency", type=int, default=8)
    asyncio.run(main(ap.parse_args()))
