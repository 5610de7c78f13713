"""``trim serve --ray`` under load: Ray Serve with 1 and 2 replicas against the plain uvicorn server, and
what a replica killed under load costs.

    python bench/serve_ray.py [--concurrency 1,64,256] [--duration 10] [--latency-ms 1000] [--out FILE]

All on this machine, loopback only: a simulated OpenAI-compatible backend that answers every call after
``--latency-ms`` (``trimroute.testing.openai_sim``; a pass-through request, model ``weak``, is one call),
a local Ray cluster (a head and a worker node of 1 CPU each, ``trimroute.testing.ray_cluster``), and N
client coroutines sending back-to-back requests for a fixed time (``bench/serve_load.py``'s load loop).
Baseline, measured in the same run: ``trim serve`` on uvicorn (one worker) in front of the same backend.
"Added" latency is end-to-end minus the backend's own latency.

Kill phases: 2 replicas, the top concurrency, one replica SIGKILLed halfway through. Run twice: with the
ingress's retry (``attempts=3``, the default) and without it (``attempts=1``: what Ray Serve guarantees
by itself). Counted: requests answered, failed (status and error kind), sent again (backend calls beyond
one per request) and the ingress's retry counter.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import ray
from ray import serve
from rich.console import Console
from rich.table import Table
from serve_load import Phase, run_phase, start

from trimroute.serve.ray_serve import APP_NAME, REPLICA, application
from trimroute.testing.llama_server import free_port
from trimroute.testing.openai_sim import SimulatedServer
from trimroute.testing.ray_cluster import LocalRayCluster

BODY = {"model": "weak", "messages": [{"role": "user", "content": "What is 6 times 7?"}]}


def row(phase: Phase, latency_ms: float, baseline: dict[str, Any] | None) -> dict[str, Any]:
    s = phase.summary()
    s["added_p50_ms"], s["added_p99_ms"] = s["p50_ms"] - latency_ms, s["p99_ms"] - latency_ms
    if baseline is not None:
        s["throughput_ratio_vs_uvicorn"] = s["throughput_rps"] / baseline["throughput_rps"]
    return s


async def kill_phase(url: str, concurrency: int, duration_s: float, victim: int) -> dict[str, Any]:
    """``concurrency`` clients for ``duration_s``; ``victim`` (a pid) is SIGKILLed halfway through."""
    payload, headers = json.dumps(BODY).encode(), {"content-type": "application/json"}
    outcomes: Counter[str] = Counter()
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency, keepalive_expiry=2.0)
    async with httpx.AsyncClient(limits=limits, timeout=120) as client:
        stop_at = time.monotonic() + duration_s

        async def client_loop() -> None:
            while time.monotonic() < stop_at:
                try:
                    r = await client.post(url, content=payload, headers=headers)
                    outcomes["answered" if r.status_code == 200 else f"HTTP {r.status_code}"] += 1
                except httpx.HTTPError as e:
                    outcomes[type(e).__name__] += 1

        async def killer() -> None:
            await asyncio.sleep(duration_s / 2)
            os.kill(victim, signal.SIGKILL)

        await asyncio.gather(killer(), *(client_loop() for _ in range(concurrency)))
    return dict(outcomes)


def ingress_counters(base: str) -> dict[str, float]:
    lines = httpx.get(f"{base}/metrics").text.splitlines()
    return {ln.split()[0]: float(ln.split()[1]) for ln in lines if ln.startswith("trim_ingress_")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--concurrency", default="1,64,256", help="comma-separated client counts")
    ap.add_argument("--duration", type=float, default=10.0, help="seconds per phase")
    ap.add_argument("--latency-ms", type=float, default=1000.0, help="simulated backend latency per call")
    ap.add_argument("--out", type=Path, help="write the results as JSON here")
    args = ap.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    top = max(levels)
    tmp = Path(tempfile.mkdtemp(prefix="serve-ray-"))
    console = Console(stderr=True)
    load_before = os.getloadavg()
    results: dict[str, Any] = {"phases": [], "kills": []}
    with SimulatedServer(args.latency_ms / 1000, tmp / "backend.log") as backend:
        model = {"kind": "openai", "base_url": backend.base_url, "model": "sim", "api_key_env": None,
                 "chat_template": "chatml"}  # fmt: skip
        config = {
            "policy": "weak", "weak": model, "strong": model,
            "engine": {"backend_concurrency": {"weak": 2 * top, "strong": 2 * top, "scorer": 2 * top}},
            "serve": {"max_pending": 2 * top, "api_keys_env": None},
        }  # fmt: skip
        (tmp / "serve.yaml").write_text(json.dumps(config))
        port = free_port()
        uvicorn = start([sys.executable, "-m", "trimroute", "serve", "--config", str(tmp / "serve.yaml"),
                         "--port", str(port)], f"http://127.0.0.1:{port}/health", tmp / "uvicorn.log")  # fmt: skip
        baselines: dict[int, dict[str, Any]] = {}
        try:
            for n in levels:
                console.print(f"uvicorn, {n} clients")
                phase = asyncio.run(
                    run_phase(f"http://127.0.0.1:{port}/v1/chat/completions", BODY, n, args.duration, "uvicorn")
                )
                baselines[n] = row(phase, args.latency_ms, None)
                results["phases"].append(baselines[n])
        finally:
            uvicorn.terminate()
            uvicorn.wait(timeout=30)

        with LocalRayCluster(workers=1, cpus_per_node=1) as cluster:
            ray.init(address=cluster.address, log_to_driver=False)
            serve_port = free_port()
            serve.start(http_options={"host": "127.0.0.1", "port": serve_port}, proxy_location="HeadOnly")
            base = f"http://127.0.0.1:{serve_port}"
            for replicas in (1, 2):
                serve.run(application(config, replicas=replicas), name=APP_NAME, route_prefix="/")
                for n in levels:
                    console.print(f"Ray Serve, {replicas} replica(s), {n} clients")
                    phase = asyncio.run(
                        run_phase(f"{base}/v1/chat/completions", BODY, n, args.duration, f"ray-{replicas}")
                    )
                    results["phases"].append(row(phase, args.latency_ms, baselines[n]) | {"replicas": replicas})
                serve.delete(APP_NAME)
            for attempts in (3, 1):
                serve.run(application(config, replicas=2, attempts=attempts), name=APP_NAME, route_prefix="/")
                asked = backend.completions()
                console.print(f"Ray Serve, 2 replicas, {top} clients, one replica killed, attempts={attempts}")
                victim = sorted(cluster.processes(f"ray::ServeReplica:{APP_NAME}:{REPLICA}"))[0]
                outcomes = asyncio.run(kill_phase(f"{base}/v1/chat/completions", top, args.duration, victim))
                requests = sum(outcomes.values())
                results["kills"].append({
                    "attempts": attempts, "concurrency": top, "requests": requests, "outcomes": outcomes,
                    "failed": requests - outcomes.get("answered", 0),
                    "sent_again": backend.completions() - asked - requests,
                    "ingress": ingress_counters(base),
                })  # fmt: skip
                serve.delete(APP_NAME)
            serve.shutdown()
            ray.shutdown()

    uptime = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    results["config"] = {"latency_ms": args.latency_ms, "duration_s": args.duration, "concurrency": levels,
                         "cpus": os.cpu_count(), "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
                         "uptime_after": uptime}  # fmt: skip
    table = Table(
        title=f"trim serve: uvicorn vs Ray Serve, backend latency {args.latency_ms:g} ms, {args.duration:g} s per phase"
    )
    for col in ("target", "clients", "rps", "vs uvicorn", "added p50", "added p99", "errors"):
        table.add_column(col, justify="right")
    for p in results["phases"]:
        table.add_row(p["target"], str(p["concurrency"]), f"{p['throughput_rps']:.1f}",
                      f"{p.get('throughput_ratio_vs_uvicorn', 1.0):.3f}", f"{p['added_p50_ms']:.1f} ms",
                      f"{p['added_p99_ms']:.1f} ms", str(sum(p["errors"].values())))  # fmt: skip
    Console(width=160).print(table)
    for k in results["kills"]:
        Console(width=160).print(f"kill, attempts={k['attempts']}: {k['requests']} requests, {k['failed']} failed "
                                 f"{k['outcomes']}, {k['sent_again']} sent again, ingress {k['ingress']}")  # fmt: skip
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
