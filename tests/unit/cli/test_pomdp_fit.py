from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from pathlib import Path

from typer.testing import CliRunner

from trimroute.cli import app
from trimroute.policies import parse_policy
from trimroute.runner import simulated_engine
from trimroute.sim.backend import is_sim_correct, simulated_problems
from trimroute.sim.presets import load_params
from trimroute.trajectories import TrajectoryWriter


def test_pomdp_solve_writes_policy_folders(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["pomdp", "solve", "--preset", "qwen1.5b-7b", "--lam", "1e-3", "--lam", "2e-3",
                                      "--token-bins", "2", "--out", str(tmp_path)])  # fmt: skip
    assert result.exit_code == 0, result.output
    for lam in ("0.001", "0.002"):
        config = json.loads((tmp_path / f"lam={lam}" / "config.json").read_text())
        assert config["lam"] == float(lam) and config["n_token_bins"] == 2 and config["trimroute_version"]
    assert parse_policy(f"pomdp:{tmp_path / 'lam=0.001'}").needs_scores


def test_pomdp_solve_rejects_missing_source(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["pomdp", "solve", "--lam", "1e-3", "--out", str(tmp_path)])
    assert result.exit_code == 1 and "exactly one of --preset" in result.output


def test_fit_writes_a_params_file_usable_by_the_solver(tmp_path: Path) -> None:
    async def record(spec: str) -> None:
        with TrajectoryWriter(tmp_path / f"{spec}.jsonl") as w:
            async for t in simulated_engine("qwen1.5b-7b").run(simulated_problems(200), parse_policy(spec)):
                w.write(replace(t, correct=is_sim_correct(t)))

    asyncio.run(record("weak"))
    asyncio.run(record("strong"))
    labels = tmp_path / "labels.jsonl"
    records = [([0.9, 0.8, 0.1, 0.3], 2), ([0.95, 0.7], -1), ([0.2, 0.4, 0.5], 0), ([0.9, 0.85, 0.9], None)]
    labels.write_text("".join(json.dumps({"scores": s, "first_wrong": f}) + "\n" for s, f in records))
    out = tmp_path / "mine.json"
    args = ["fit", "--weak", str(tmp_path / "weak.jsonl"), "--strong", str(tmp_path / "strong.jsonl"),
            "--labels", str(labels), "--out", str(out)]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert load_params(out).name == "mine"
    solved = CliRunner().invoke(app, ["pomdp", "solve", "--params", str(out), "--lam", "1e-3", "--out", str(tmp_path)])
    assert solved.exit_code == 0, solved.output


def test_fit_reports_a_missing_file(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["fit", "--weak", str(tmp_path / "none.jsonl"), "--strong", "x", "--labels", "y",
                                      "--out", str(tmp_path / "o.json")])  # fmt: skip
    assert result.exit_code == 1 and "no trajectory file" in result.output


def test_fit_takes_a_run_or_three_files(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["fit", "--run", str(tmp_path), "--weak", "w.jsonl", "--out", "o.json"])
    assert result.exit_code == 1 and "either --run RUN_DIR or all of --weak" in result.output
    result = CliRunner().invoke(app, ["fit", "--run", str(tmp_path / "none"), "--out", str(tmp_path / "o.json")])
    assert result.exit_code == 1 and "not a trim eval run directory" in result.output
