"""Prefix-cache locality across two replicas: problem affinity on vs off (least outstanding only).

    python bench/replicas.py [--problems 8] [--steps 4] [--step-tokens 40] [--concurrency 8]

Two llama.cpp servers (SmolLM2-135M, ``--cache true``: a prefix cache of many prompts, as vLLM's automatic
prefix caching keeps) serve the weak role as replicas; GSM8K problems are solved step by step (weak-only,
greedy, so both modes generate the same tokens). Each mode starts on freshly started servers. The servers
report in their logs, per request, how many prompt tokens they took from the cache (``N prefix-match hit``);
the bench prints the share of prompt tokens served from cache and the wall time in each mode, and the
ratios against the no-affinity baseline measured in the same run.
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

from trimroute import Engine, EngineConfig
from trimroute.config import BackendConfig
from trimroute.data.datasets import load_dataset
from trimroute.generators.openai_compat import OpenAIGenerator
from trimroute.policies import parse_policy
from trimroute.runner import route
from trimroute.testing.llama_server import LlamaServer, smollm2_path

GSM8K = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "gsm8k_test.jsonl"
HIT = re.compile(r"Llama\.generate: (\d+) prefix-match hit")


async def mode(affinity: bool, args: argparse.Namespace, logs: Path) -> dict[str, Any]:
    servers = [
        LlamaServer(smollm2_path(), log_path=logs / f"{affinity}-{i}.log", args=["--cache", "true"]) for i in range(2)
    ]
    for server in servers:
        server.start()
    try:
        config = BackendConfig(
            model=servers[0].model,
            base_urls=tuple(s.base_url for s in servers),
            temperature=0.0,
            options={"affinity": affinity},
        )
        weak = OpenAIGenerator(config)
        engine_config = EngineConfig(
            max_steps=args.steps, max_step_tokens=args.step_tokens, concurrency=args.concurrency, speculate=False
        )
        engine = Engine(weak, weak, None, engine_config)
        problems = load_dataset(str(GSM8K), limit=args.problems, seed=0)
        t0 = time.perf_counter()
        try:
            trajectories = await route(engine, problems, parse_policy("weak"), grade=None)
        finally:
            await engine.aclose()
        wall = time.perf_counter() - t0
    finally:
        for server in servers:
            server.stop()
    cached = sum(int(m) for s in servers for m in HIT.findall(s.log_path.read_text(errors="replace")))
    prompt = sum(t.usage.weak.prompt_tokens for t in trajectories)
    return {
        "affinity": affinity,
        "wall_s": round(wall, 2),
        "calls": sum(t.usage.weak.calls for t in trajectories),
        "prompt_tokens": prompt,
        "generated_tokens": sum(t.usage.weak.generated_tokens for t in trajectories),
        "cached_prompt_tokens": cached,
        "cached_share": round(cached / prompt, 3),
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
        f"; generated tokens equal: {on['generated_tokens'] == off['generated_tokens']}"
    )


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--problems", type=int, default=8)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--step-tokens", type=int, default=40)
    ap.add_argument("--concurrency", type=int, default=8)
    asyncio.run(main(ap.parse_args()))
