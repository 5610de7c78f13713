import json
from typing import cast

import pytest
from typer.testing import CliRunner

from trimroute.cli import app
from trimroute.engine import Engine
from trimroute.errors import ConfigError
from trimroute.learn.train import PPOConfig, TrainConfig, TrainingSetup, train_policy, train_sweep
from trimroute.policies import parse_policy
from trimroute.policies.agg import LearnedPolicy
from trimroute.testing import ScriptedGenerator, ScriptedScorer
from trimroute.types import Action, Observation, Problem

# The weak model's step 1 is wrong (scored 0.1) and breaks the answer; the strong rewrite fixes it.
WEAK = ["one two", "wrong three four five", "so \\boxed{4}"]
STRONG = ["uno", "right step here", "thus \\boxed{4}"]
SMALL = PPOConfig(n_steps=64, batch_size=64, n_epochs=4)


def setup() -> TrainingSetup:
    def engine() -> Engine:
        return Engine(ScriptedGenerator("weak", WEAK), ScriptedGenerator("strong", STRONG), ScriptedScorer())

    problems = [Problem(f"p{i}", f"problem {i}", "4") for i in range(12)]
    return TrainingSetup(engine, problems[:8], problems[8:], lambda t: "wrong" not in t.solution, {"env": "scripted"})


def obs(score: float) -> Observation:
    return Observation("p", (0.9, score), (2, 4), (Action.CONTINUE,), 0, None)


def test_ppo_learns_to_rewrite_the_wrong_step_only(tmp_path):
    ppo = PPOConfig(learning_rate=3e-3, n_steps=64, batch_size=64, n_epochs=4)
    config = TrainConfig("agg", lam=0.01, steps=4096, n_envs=4, eval_every=2048, ppo=ppo)
    best = train_policy(setup(), config, tmp_path)
    assert best["accuracy"] == 1.0 and best["strong_tokens"] == 3.0  # only the 3-token rewrite of step 1
    policy = parse_policy(f"agg:{tmp_path / 'policy'}")
    assert policy.decide(obs(0.1)) is Action.REGENERATE
    assert policy.decide(obs(0.9)) is Action.CONTINUE


def test_run_folder_validation_history_and_resume(tmp_path):
    config = TrainConfig("seq", lam=0.01, steps=256, n_envs=2, eval_every=128, ppo=SMALL)
    train_policy(setup(), config, tmp_path)
    assert {p.name for p in tmp_path.iterdir()} == {"policy", "checkpoint.zip", "state.json", "tb"}
    assert any((tmp_path / "tb").rglob("events.out.tfevents.*"))
    state = json.loads((tmp_path / "state.json").read_text())
    assert [h["timesteps"] for h in state["history"]] == [128, 256]
    artifact = json.loads((tmp_path / "policy" / "config.json").read_text())
    assert artifact["validation"]["best"] == state["best"] and artifact["training"]["env"] == "scripted"

    longer = TrainConfig("seq", lam=0.01, steps=512, n_envs=2, eval_every=128, ppo=SMALL)
    train_policy(setup(), longer, tmp_path)  # resumes from the checkpoint at 256 steps
    state = json.loads((tmp_path / "state.json").read_text())
    assert [h["timesteps"] for h in state["history"]] == [128, 256, 384, 512]

    with pytest.raises(ConfigError, match="another configuration"):
        train_policy(setup(), TrainConfig("seq", lam=0.02, steps=512, n_envs=2, eval_every=128, ppo=SMALL), tmp_path)


def test_sweep_writes_one_policy_per_lambda_and_a_curve(tmp_path):
    config = TrainConfig("agg", lam=0.0, steps=128, n_envs=2, eval_every=128, ppo=SMALL)
    curve = json.loads(train_sweep(setup(), config, [0.01, 0.1], tmp_path).read_text())
    assert [p["lam"] for p in curve["points"]] == [0.1, 0.01]
    for point in curve["points"]:
        assert parse_policy(point["policy"]).name == point["policy"]
        assert point["validation"]["lam"] == point["lam"]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"kind": "mlp"}, "agg"),
        ({"lam": -1.0}, "lam"),
        ({"steps": 0}, "steps"),
        ({"features": "seq"}, "seq policies"),
    ],
)
def test_bad_training_config(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**{"kind": "agg", "lam": 1e-3, "steps": 10, **kwargs})


runner = CliRunner()


def test_cli_trains_a_lambda_sweep_in_the_simulator(tmp_path):
    args = [
        "train",
        "agg",
        "--lam",
        "2e-3",
        "5e-4",
        "--steps",
        "256",
        "--n-envs",
        "4",
        "--rollout",
        "64",
        "--eval-every",
        "256",
        "--train-problems",
        "50",
        "--val-problems",
        "20",
        "--out",
        str(tmp_path),
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    curve = json.loads((tmp_path / "curve.json").read_text())
    assert curve["env"] == "sim:qwen1.5b-7b" and [p["lam"] for p in curve["points"]] == [2e-3, 5e-4]
    policy = cast(LearnedPolicy, parse_policy(f"agg:{tmp_path / 'lam_0.0005' / 'policy'}"))
    assert policy.features.name == "official"


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "mlp", "--lam", "1e-3"], "agg or seq"),
        (["train", "agg", "--lam", "1e-3", "lots"], "--lam takes numbers"),
        (["train", "agg", "--lam", "1e-3", "--env", "live"], "--dataset"),
        (["train", "agg", "--lam", "1e-3", "--env", "sim:nope"], "nope"),
        (["train", "agg", "--lam", "1e-3", "--dataset", "x.jsonl"], "--env live"),
        (["train", "seq", "--lam", "1e-3", "--features", "paper"], "agg policies"),
    ],
)
def test_cli_errors_are_one_line(args, message, tmp_path):
    result = runner.invoke(app, [*args, "--out", str(tmp_path)])
    assert result.exit_code == 1
    assert message in result.output and result.output.startswith("error:")
