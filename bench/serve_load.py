"""Load on ``trim serve``: N concurrent clients for a fixed time against a latency-simulating backend.

    python bench/serve_load.py [--concurrency 1,16,64,256] [--duration 10] [--latency-ms 1000] [--router weak]

Three processes on loopback only: a simulated OpenAI-compatible backend that answers every step after
``--latency-ms`` with a final step (``\\boxed{42}``, so a pass-through request is one backend call), ``trim serve``
in front of it, and this load generator. Baseline measured in the same run: the same clients sending the
backend directly the request TRIM sends it. Reported per concurrency: throughput, p50/p99 latency, the
latency the server adds (via TRIM minus direct), and errors. Every phase is bounded by ``--duration``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from trimroute import prompts
from trimroute.testing.llama_server import free_port
from trimroute.testing.openai_sim import simulated_openai_app
from trimroute.types import Problem

QUESTION = "What is 6 times 7?"


@dataclass
class Phase:
    """One load phase: latencies of successful requests and errors by kind."""

    concurrency: int
    target: str
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list, repr=False)
    errors: Counter[str] = field(default_factory=Counter)

    def quantile(self, q: float) -> float:
        return statistics.quantiles(self.latencies_ms, n=100, method="inclusive")[int(q * 100) - 1]

    def summary(self) -> dict[str, Any]:
        ok = len(self.latencies_ms)
        return {
            "target": self.target,
            "concurrency": self.concurrency,
            "requests": ok,
            "throughput_rps": ok / self.seconds,
            "p50_ms": self.quantile(0.5) if ok > 1 else float("nan"),
            "p99_ms": self.quantile(0.99) if ok > 1 else float("nan"),
            "errors": dict(self.errors),
        }


async def run_phase(url: str, body: dict[str, Any], concurrency: int, duration_s: float, target: str) -> Phase:
    """``concurrency`` clients sending ``body`` back to back for ``duration_s`` (after one warm-up round)."""
    phase = Phase(concurrency, target)
    payload = json.dumps(body).encode()
    headers = {"content-type": "application/json"}
    # idle connections expire before the servers' 5 s keep-alive timeout, so a request never races a close
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency, keepalive_expiry=2.0)
    async with httpx.AsyncClient(limits=limits, timeout=120) as client:
        await asyncio.gather(*(client.post(url, content=payload, headers=headers) for _ in range(concurrency)))
        stop_at = time.monotonic() + duration_s

        async def client_loop() -> None:
            while time.monotonic() < stop_at:
                t0 = time.perf_counter()
                try:
                    r = await client.post(url, content=payload, headers=headers)
                except httpx.HTTPError as e:
                    phase.errors[type(e).__name__] += 1
                    continue
                if r.status_code == 200:
                    phase.latencies_ms.append((time.perf_counter() - t0) * 1000)
                else:
                    phase.errors[f"HTTP {r.status_code}"] += 1

        t0 = time.perf_counter()
        await asyncio.gather(*(client_loop() for _ in range(concurrency)))
        phase.seconds = time.perf_counter() - t0
    return phase


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux ``/proc``): load-independent cost."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start(cmd: list[str], ready_url: str, log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{cmd[2:4]} exited:\n{log.read_text()}")
        try:
            if httpx.get(ready_url).status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.2)
    proc.terminate()
    raise SystemExit(f"{ready_url} did not come up:\n{log.read_text()}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--concurrency", default="1,16,64,256", help="comma-separated client counts")
    ap.add_argument("--duration", type=float, default=10.0, help="seconds per phase")
    ap.add_argument("--latency-ms", type=float, default=1000.0, help="simulated backend latency per call")
    ap.add_argument("--router", default="weak", help="model name sent to TRIM (weak = pass-through)")
    ap.add_argument("--out", type=Path, help="write the results as JSON here")
    ap.add_argument("--backend", type=int, metavar="PORT", help=argparse.SUPPRESS)  # internal: run the backend
    args = ap.parse_args()
    if args.backend:
        import uvicorn

        app = simulated_openai_app(args.latency_ms / 1000)
        uvicorn.run(app, host="127.0.0.1", port=args.backend, log_level="warning", lifespan="off")
        return

    levels = [int(c) for c in args.concurrency.split(",")]
    tmp = Path(tempfile.mkdtemp(prefix="serve-load-"))
    backend_port, trim_port = free_port(), free_port()
    backend_url = f"http://127.0.0.1:{backend_port}/v1"
    top = max(levels)
    config = {
        "policy": "weak",
        "weak": {"kind": "openai", "base_url": backend_url, "model": "sim", "api_key_env": None},
        "strong": {"kind": "openai", "base_url": backend_url, "model": "sim", "api_key_env": None},
        "engine": {"backend_concurrency": {"weak": top, "strong": top, "scorer": top}},
        "serve": {"max_pending": 2 * top},
    }
    (tmp / "serve.yaml").write_text(yaml.safe_dump(config))
    env = os.environ | {"TRIM_API_KEYS": ""}
    backend = start([sys.executable, __file__, "--backend", str(backend_port), "--latency-ms", str(args.latency_ms)],
                    f"{backend_url}/models", tmp / "backend.log")  # fmt: skip
    trim = start([sys.executable, "-m", "trimroute", "serve", "--config", str(tmp / "serve.yaml"),
                  "--port", str(trim_port)], f"http://127.0.0.1:{trim_port}/health", tmp / "trim.log", env)  # fmt: skip
    problem = Problem("bench", QUESTION)
    direct_body = {
        "model": "sim",
        "prompt": prompts.render_chatml(prompts.messages(problem, [])),
        "max_tokens": 2048,
        "stop": [prompts.SEPARATOR],
    }
    trim_body = {"model": args.router, "messages": [{"role": "user", "content": QUESTION}]}
    rows: list[dict[str, Any]] = []
    try:
        with Progress(console=Console(stderr=True)) as progress:
            task = progress.add_task("load phases", total=2 * len(levels))
            for n in levels:
                direct = asyncio.run(run_phase(f"{backend_url}/completions", direct_body, n, args.duration, "direct"))
                progress.advance(task)
                cpu0 = cpu_seconds(trim.pid)
                routed = asyncio.run(
                    run_phase(f"http://127.0.0.1:{trim_port}/v1/chat/completions", trim_body, n, args.duration, "trim")
                )
                cpu = cpu_seconds(trim.pid) - cpu0
                progress.advance(task)
                d, r = direct.summary(), routed.summary()
                rows.append({"direct": d, "trim": r, "added_p50_ms": r["p50_ms"] - d["p50_ms"],
                             "added_p99_ms": r["p99_ms"] - d["p99_ms"],
                             "throughput_ratio": r["throughput_rps"] / d["throughput_rps"],
                             # warm-up round included: the server's CPU per request it answered
                             "trim_cpu_ms_per_request": 1000 * cpu / (r["requests"] + n)})  # fmt: skip
    finally:
        trim.terminate()
        backend.terminate()
        trim.wait(timeout=15)
        backend.wait(timeout=15)

    table = Table(title=f"trim serve, router {args.router!r}, backend latency {args.latency_ms:g} ms, "
                        f"{args.duration:g} s per phase")  # fmt: skip
    for col in ("clients", "direct rps", "trim rps", "ratio", "direct p50", "trim p50", "added p50",
                "direct p99", "trim p99", "added p99", "trim CPU/req", "errors"):  # fmt: skip
        table.add_column(col, justify="right")
    for row in rows:
        d, r = row["direct"], row["trim"]
        errors = sum(d["errors"].values()) + sum(r["errors"].values())
        table.add_row(
            str(d["concurrency"]), f"{d['throughput_rps']:.1f}", f"{r['throughput_rps']:.1f}",
            f"{row['throughput_ratio']:.3f}", f"{d['p50_ms']:.1f}", f"{r['p50_ms']:.1f}", f"{row['added_p50_ms']:.2f}",
            f"{d['p99_ms']:.1f}", f"{r['p99_ms']:.1f}", f"{row['added_p99_ms']:.2f}",
            f"{row['trim_cpu_ms_per_request']:.2f} ms", str(errors),
        )  # fmt: skip
    Console(width=200).print(table)
    if args.out:
        meta = {"router": args.router, "latency_ms": args.latency_ms, "duration_s": args.duration}
        args.out.write_text(json.dumps({"config": meta, "results": rows}, indent=2))


if __name__ == "__main__":
    main()
