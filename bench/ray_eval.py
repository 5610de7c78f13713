"""``trim eval --ray`` against a local ``trim eval`` on the same simulated sweep, measured in one run.

The sweep (default 2,000 problems × 10 points = 20,000 problem-points: weak, strong, thr:0,...,0.7) runs
once in one process (the baseline), then on a real local Ray cluster with 1 and with 2 worker nodes of one
CPU each (the head takes no work), each time as the real ``trim eval`` command in a fresh run directory.
Checked: identical metrics (``without_timing``: all but wall times and cache counters), every point holds
each problem once, and the run's cache holds exactly the keys of the local run's (nothing the workers
called is lost; speculation is off so that the calls are decided by the trajectories alone).

Measured per run: wall time of the command (cluster start excluded, its Python start and ``ray.init``
included), the sweep's own time (``calls.json``), CPU seconds of the driver process and of the worker
actors (sampled from /proc), the calls made and the cache rows. The projection for W machines: the driver's
floor (appending and fsyncing every trajectory, inserting every cache row, timed alone) is serial, the
workers' CPU divides by W. The JSON is rewritten after every run.

    python bench/ray_eval.py [--problems 2000] [--methods "thr:0,0.1,...,0.7"] [--workers 1 2]
                             [--out docs/ray_eval.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from trimroute.eval.results import without_timing
from trimroute.store import CallStore
from trimroute.testing.ray_cluster import LocalRayCluster
from trimroute.trajectories import TrajectoryWriter, read_trajectories

SRC = str(Path(__file__).resolve().parents[1] / "src")
TICK = os.sysconf("SC_CLK_TCK")


def _cpu_s(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime


class WorkerCPU:
    """Samples the CPU time of the cluster's ShardWorker processes until stopped (the last value per pid)."""

    def __init__(self, cluster: LocalRayCluster | None) -> None:
        self.cluster, self.done = cluster, threading.Event()
        self.seen: dict[int, float] = {}
        self.thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self.done.wait(0.25):
            for pid in self.cluster.processes("ray::ShardWorker") if self.cluster else []:
                cpu = _cpu_s(pid)
                if cpu is not None:
                    self.seen[pid] = cpu

    def __enter__(self) -> WorkerCPU:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.thread.join()

    @property
    def total(self) -> float:
        return sum(self.seen.values())


def run_eval(args: list[str], cluster: LocalRayCluster | None) -> dict[str, Any]:
    """Run ``trim eval ARGS``; its wall time, the driver's CPU time and the workers'."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (SRC, os.environ.get("PYTHONPATH")) if p)}
    t0 = time.perf_counter()
    with WorkerCPU(cluster) as workers, tempfile.TemporaryFile() as log:
        proc = subprocess.Popen([sys.executable, "-m", "trimroute", "eval", *args], env=env, stdout=log,
                                stderr=subprocess.STDOUT)  # fmt: skip
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            log.seek(0)
            raise SystemExit(f"trim eval {' '.join(args)} failed:\n{log.read().decode(errors='replace')[-3000:]}")
    return {"wall_s": wall, "driver_cpu_s": usage.ru_utime + usage.ru_stime, "worker_cpu_s": workers.total}


def inspect(run: Path, n: int) -> dict[str, Any]:
    """The run's sweep time, calls and cache rows; fails on a point that misses or repeats a problem."""
    for point in json.loads((run / "points.json").read_text()):
        ids = [json.loads(line)["problem"]["id"] for line in (run / point["file"]).read_text().splitlines()]
        assert len(ids) == n == len(set(ids)), f"{run.name}/{point['name']}: {len(ids)} lines, {len(set(ids))} ids"
    calls = json.loads((run / "calls.json").read_text())
    metrics = json.loads((run / "metrics.json").read_text())
    with sqlite3.connect(run / "cache.sqlite") as conn:
        rows = conn.execute("SELECT COUNT(*) FROM calls").fetchone()[0]
    return {
        "sweep_s": sum(c["time"]["wall_ms"] for c in calls.values()) / 1000,
        "calls_made": metrics["calls"]["made"],
        "cache_rows": rows,
        "metrics": metrics,
    }


def driver_floor(run: Path, chunk: int = 32) -> float:
    """Seconds the driver needs, whatever the workers, to save ``run``: every trajectory appended and
    fsynced (``TrajectoryWriter``, as ``route`` does) and every cache row inserted in chunk-sized batches."""
    with sqlite3.connect(run / "cache.sqlite") as conn:
        rows = conn.execute("SELECT key, value FROM calls").fetchall()
    points = [run / p["file"] for p in json.loads((run / "points.json").read_text())]
    trajectories = [list(read_trajectories(p)) for p in points]
    with tempfile.TemporaryDirectory(prefix="floor-") as tmp:
        t0 = time.perf_counter()
        store = CallStore(Path(tmp) / "cache.sqlite")
        asyncio.run(_put_all(store, rows, chunk))
        store.close()
        for i, point in enumerate(trajectories):
            with TrajectoryWriter(Path(tmp) / f"{i}.jsonl") as writer:
                for t in point:
                    writer.write(t)
        return time.perf_counter() - t0


async def _put_all(store: CallStore, rows: list[tuple[str, str]], chunk: int) -> None:
    for i in range(0, len(rows), chunk):
        await store.put_many(rows[i : i + chunk])


def loadavg() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def cache_keys(run: Path) -> set[str]:
    with sqlite3.connect(run / "cache.sqlite") as conn:
        return {k for (k,) in conn.execute("SELECT key FROM calls")}


def summarize(a: argparse.Namespace, runs: dict[str, Any], checks: dict[str, Any], extra: dict[str, Any]) -> None:
    """Write what is measured so far (after every run: a late failure keeps the earlier numbers)."""
    done = {n: {k: v for k, v in r.items() if k != "metrics"} for n, r in runs.items()}
    ray = {n: r for n, r in done.items() if n != "local"}
    result: dict[str, Any] = {
        "command": "python bench/ray_eval.py " + " ".join(sys.argv[1:]),
        "machine": {"cores": os.cpu_count(), "loadavg_before": extra["load_before"], "loadavg_after": loadavg()},
        "sweep": extra["sweep"],
        "checks": checks,
        "runs": done,
    }
    if "local" in done and ray:
        local_wall = done["local"]["wall_s"]
        worker_cpu = max(r["worker_cpu_s"] for r in ray.values())
        # what a Ray run spends outside its sweep: Python start, ray.init, placing the actors, the report
        fixed = min(r["wall_s"] - r["sweep_s"] for r in ray.values())
        floor = extra["driver_floor_s"]
        result["wall_ratio_local_over_ray"] = {n: local_wall / r["wall_s"] for n, r in ray.items()}
        result["projection"] = {
            "model": "T(W) ≈ fixed + max(driver floor, worker CPU / W): W machines with a free core each and "
            "model servers that keep up; the driver saves every trajectory and cache row alone (the floor), "
            "the workers' CPU (simulated models, cache, grading) divides by W. On this machine the driver and "
            "W workers share its cores, so measured runs are CPU-bound well above this.",
            "fixed_s": fixed,
            "driver_floor_s": floor,
            "worker_cpu_s": worker_cpu,
            "projected_s": {str(w): fixed + max(floor, worker_cpu / w) for w in (1, 2, 4, 8, 16, 32)},
            "speedup_bound": local_wall / (fixed + floor),
        }
    Path(a.out).write_text(json.dumps(result, indent=2) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--problems", type=int, default=2000)
    ap.add_argument("--methods", default="thr:0,0.1,...,0.7")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--bootstrap", type=int, default=200)
    ap.add_argument("--out", default="docs/ray_eval.json")
    a = ap.parse_args()
    # speculation off: the calls are then decided by the trajectories alone, so the caches of a local and a
    # Ray run can be compared key for key (with it on, how many speculative steps start depends on timing)
    sweep = ["--sim", "qwen1.5b-7b", "--limit", str(a.problems), "--methods", a.methods, "--bootstrap",
             str(a.bootstrap), "--set", "engine.speculate=false"]  # fmt: skip
    runs: dict[str, Any] = {}
    checks: dict[str, Any] = {}
    extra: dict[str, Any] = {"load_before": loadavg(), "driver_floor_s": None}
    with tempfile.TemporaryDirectory(prefix="ray-eval-") as tmp:
        local = Path(tmp) / "local"
        runs["local"] = {**run_eval([*sweep, "--out", str(local)], None), **inspect(local, a.problems)}
        baseline, keys = without_timing(runs["local"]["metrics"]), cache_keys(local)
        points = len(baseline["points"])
        extra["sweep"] = {"problems": a.problems, "points": points, "problem_points": a.problems * points,
                          "methods": a.methods, "preset": "qwen1.5b-7b", "speculate": False}  # fmt: skip
        extra["driver_floor_s"] = driver_floor(local)
        print(f"local: {runs['local']['wall_s']:.1f} s; the driver's floor {extra['driver_floor_s']:.1f} s", flush=True)
        summarize(a, runs, checks, extra)
        for w in a.workers:
            t0 = time.perf_counter()
            with LocalRayCluster(workers=w, cpus_per_node=1, head_cpus=0) as cluster:
                started = time.perf_counter() - t0
                out = Path(tmp) / f"ray{w}"
                args = [*sweep, "--out", str(out), "--ray", cluster.address, "--ray-workers", str(w)]
                runs[f"ray_{w}"] = {**run_eval(args, cluster), **inspect(out, a.problems), "cluster_start_s": started}
            checks[f"ray_{w}"] = {
                "identical_metrics": without_timing(runs[f"ray_{w}"]["metrics"]) == baseline,
                "same_cache_keys": cache_keys(out) == keys,
                "same_calls_made": runs[f"ray_{w}"]["calls_made"] == runs["local"]["calls_made"],
            }
            print(f"ray, {w} worker(s): {runs[f'ray_{w}']['wall_s']:.1f} s; {checks[f'ray_{w}']}", flush=True)
            summarize(a, runs, checks, extra)
    print(Path(a.out).read_text())
    failed = [f"{n}: {k}" for n, c in checks.items() for k, ok in c.items() if not ok]
    if failed:
        raise SystemExit("a Ray run differs from the local run: " + ", ".join(failed))


if __name__ == "__main__":
    main()
