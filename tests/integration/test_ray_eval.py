"""``trim eval --ray`` and ``trim pomdp solve --ray`` on a real local Ray cluster (a head and a worker node).

Simulated backends (``--sim``) keep it fast; speculation is off so that the calls a sweep makes are decided by
its trajectories alone, and the call caches of a local and a Ray run can be compared key for key.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from typer.testing import CliRunner

from trimroute.cli import app
from trimroute.eval.results import without_timing
from trimroute.testing.ray_cluster import LocalRayCluster

SIM = ["eval", "--sim", "qwen1.5b-7b", "--bootstrap", "50", "--set", "engine.speculate=false"]
SRC = str(Path(__file__).resolve().parents[2] / "src")


def invoke(*args: str) -> str:
    result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def comparable(value: Any) -> Any:
    """A trajectory record without its timings."""
    if isinstance(value, dict):
        return {k: comparable(v) for k, v in value.items() if k not in ("wall_time_s", "timing", "latency_s")}
    if isinstance(value, list):
        return [comparable(v) for v in value]
    return value


def by_point(run: Path) -> dict[str, dict[str, Any]]:
    """Every point's trajectories by problem id; fails on a problem written twice."""
    out = {}
    for point in json.loads((run / "points.json").read_text()):
        lines = (run / point["file"]).read_text().splitlines()
        records = {r["problem"]["id"]: comparable(r) for r in map(json.loads, lines)}
        assert len(records) == len(lines), f"{point['name']}: a problem was written twice"
        out[point["name"]] = records
    return out


def cache_keys(run: Path) -> set[str]:
    with sqlite3.connect(run / "cache.sqlite") as conn:
        return {k for (k,) in conn.execute("SELECT key FROM calls")}


def metrics(run: Path) -> Any:
    return json.loads((run / "metrics.json").read_text())


def test_ray_eval_writes_the_run_a_local_eval_writes(ray_cluster: LocalRayCluster, tmp_path: Path) -> None:
    sweep = [*SIM, "--limit", "30", "--methods", "thr:quantile=0.3,0.7 random:matched automix oracle"]
    invoke(*sweep, "--out", str(tmp_path / "local"))
    out = invoke(*sweep, "--out", str(tmp_path / "ray"), "--ray", ray_cluster.address, "--ray-workers", "2")
    local, ray = tmp_path / "local", tmp_path / "ray"
    assert "this time:" in out
    assert without_timing(metrics(ray)) == without_timing(metrics(local))
    assert (ray / "report.md").read_text().count("\n") == (local / "report.md").read_text().count("\n")
    assert by_point(ray) == by_point(local)
    assert (
        json.loads((ray / "config.json").read_text())["notes"]
        == json.loads((local / "config.json").read_text())["notes"]
    )
    # the workers' calls all reached the run's cache: the same calls a local run makes and caches
    assert metrics(ray)["calls"]["made"] == metrics(local)["calls"]["made"]
    assert cache_keys(ray) == cache_keys(local)


def _lines(path: Path) -> int:
    return path.read_text().count("\n") if path.exists() else 0


def _wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_ray_eval_resumes_after_a_killed_worker_and_a_killed_driver(
    ray_cluster: LocalRayCluster, tmp_path: Path
) -> None:
    n, run = 80, tmp_path / "ray"
    sweep = [*SIM, "--limit", str(n), "--methods", "thr:0.5"]
    command = [sys.executable, "-m", "trimroute", *sweep, "--out", str(run), "--ray", ray_cluster.address,
               "--ray-workers", "2"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (SRC, os.environ.get("PYTHONPATH")) if p)}
    with open(tmp_path / "driver.log", "wb") as log:
        driver = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        weak, strong = run / "trajectories" / "weak.jsonl", run / "trajectories" / "strong.jsonl"
        _wait_for(lambda: _lines(weak) >= 10 or driver.poll() is not None, 120, "the first weak trajectories")
        workers = ray_cluster.processes("ray::ShardWorker")
        assert driver.poll() is None and len(workers) == 2 and _lines(weak) < n
        os.kill(workers[0], signal.SIGKILL)  # Ray restarts the actor and retries its chunk
        _wait_for(lambda: _lines(strong) >= 10 or driver.poll() is not None, 120, "the strong-only point")
        assert driver.poll() is None and _lines(strong) < n, "the driver finished before it could be killed"
        assert _lines(weak) == n
        os.killpg(driver.pid, signal.SIGKILL)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
        driver.wait()
    resumed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    points = by_point(run)
    assert all(len(records) == n for records in points.values())  # nothing lost, nothing twice
    invoke(*sweep, "--out", str(tmp_path / "local"))
    assert points == by_point(tmp_path / "local")
    assert without_timing(metrics(run)) == without_timing(metrics(tmp_path / "local"))


def test_pomdp_solve_on_ray_writes_the_same_policies(ray_cluster: LocalRayCluster, tmp_path: Path) -> None:
    lams = ["--lam", "3e-4", "1e-3", "3e-3"]
    solve = ["pomdp", "solve", "--preset", "qwen1.5b-7b", "--token-bins", "2", *lams]
    invoke(*solve, "--out", str(tmp_path / "local"))
    invoke(*solve, "--out", str(tmp_path / "ray"), "--ray", ray_cluster.address)
    for lam in ("0.0003", "0.001", "0.003"):
        local, ray = tmp_path / "local" / f"lam={lam}", tmp_path / "ray" / f"lam={lam}"
        configs = [json.loads((d / "config.json").read_text()) for d in (local, ray)]
        for c in configs:
            c.pop("solve_seconds")
        assert configs[0] == configs[1]
        with np.load(local / "arrays.npz") as a, np.load(ray / "arrays.npz") as b:
            assert sorted(a.files) == sorted(b.files)
            for key in a.files:
                np.testing.assert_array_equal(a[key], b[key])
