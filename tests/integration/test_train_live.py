"""``trim train --env live`` against the real llama.cpp server: a few PPO updates on real rollouts, then the
artifact routes problems through ``trim run --policy agg:...``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from trimroute.cli import app
from trimroute.testing.llama_server import LlamaServer
from trimroute.trajectories import read_trajectories

pytestmark = pytest.mark.slow

GSM8K = Path(__file__).resolve().parents[3] / "shared" / "data" / "gsm8k_test.jsonl"
# short solutions keep the test fast; the confidence scorer needs no extra model calls
RULES = ["engine.max_steps=3", "engine.max_step_tokens=16", "engine.weak_logprobs=true", "scorer.kind=confidence"]


def settings(server: LlamaServer) -> list[str]:
    keys = [
        f"{role}.{k}={v}"
        for role in ("weak", "strong")
        for k, v in (("base_url", server.base_url), ("model", server.model))
    ]
    return [arg for item in [*keys, *RULES] for arg in ("--set", item)]


def test_train_a_few_ppo_updates_on_live_rollouts_and_route_with_the_artifact(
    llama_server: LlamaServer, tmp_path: Path
) -> None:
    out = tmp_path / "agg"
    train = [
        "train", "agg", "--env", "live", "--dataset", str(GSM8K), "--lam", "1e-3", "--steps", "48",
        "--n-envs", "2", "--rollout", "8", "--eval-every", "48", "--val-problems", "2", "--out", str(out),
        *settings(llama_server),
    ]  # fmt: skip
    result = CliRunner().invoke(app, train, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    artifact = out / "lam_0.001" / "policy"
    config = json.loads((artifact / "config.json").read_text())
    assert config["training"]["env"] == "live" and config["training"]["models"]["weak"] == llama_server.model
    assert config["validation"]["best"]["problems"] == 2
    state = json.loads((out / "lam_0.001" / "state.json").read_text())
    assert state["history"][-1]["timesteps"] >= 48  # three PPO updates of 2 x 8 decisions

    runs = tmp_path / "run.jsonl"
    run = [
        "run",
        "--dataset",
        str(GSM8K),
        "--limit",
        "2",
        "--policy",
        f"agg:{artifact}",
        "--out",
        str(runs),
        *settings(llama_server),
    ]
    result = CliRunner().invoke(app, run, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    trajectories = list(read_trajectories(runs))
    assert len(trajectories) == 2 and all(t.policy == f"agg:{artifact}" for t in trajectories)
    assert all(s.score is not None for t in trajectories for s in t.steps if s.role == "weak")
