"""``trim eval`` end to end against the real llama.cpp server (SmolLM2 as both models): every baseline and
a threshold sweep on 20 GSM8K problems, then ``trim report`` and ``trim calibrate`` on the run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from trimroute.cli import app
from trimroute.config import load_run_config
from trimroute.testing.llama_server import LlamaServer
from trimroute.trajectories import read_trajectories

pytestmark = pytest.mark.slow

GSM8K = Path(__file__).resolve().parents[3] / "shared" / "data" / "gsm8k_test.jsonl"
METHODS = "thr:0,0.25,...,1 random:matched automix:min query:sw query:mf query:bert oracle"


def invoke(*args: str):
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def test_eval_runs_every_baseline_and_a_threshold_sweep(llama_server: LlamaServer, tmp_path: Path) -> None:
    run = tmp_path / "run"
    r = invoke(
        "eval", "--dataset", str(GSM8K), "--limit", "20", "--methods", METHODS,
        "--weak-url", llama_server.base_url, "--weak-model", llama_server.model,
        "--strong-url", llama_server.base_url, "--strong-model", llama_server.model,
        "--set", "strong.temperature=0.2",  # the strong role samples differently from the weak one
        "--scorer", "confidence", "--set", "engine.weak_logprobs=true",
        "--max-steps", "2", "--set", "engine.max_step_tokens=8", "--bootstrap", "50", "--out", str(run),
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    for name in ("config.json", "points.json", "calls.json", "metrics.json", "report.md", "cache.sqlite",
                 "accuracy_cost.png", "accuracy_cost.svg"):  # fmt: skip
        assert (run / name).is_file(), name
    metrics = json.loads((run / "metrics.json").read_text())
    points = json.loads((run / "points.json").read_text())
    methods = {p["method"] for p in points}
    # SmolLM2 solves no GSM8K problem as either role, so matrix factorisation has no battle with a winner to
    # learn from: its curve is left out and the report says why
    assert methods == {"weak", "strong", "thr", "random:matched", "automix:min", "query:sw", "query:bert", "oracle"}
    assert sum(p["method"] == "thr" for p in points) == 5
    # every metric is what the saved trajectories say
    for p in points:
        trajectories = list(read_trajectories(run / p["file"]))
        graded = [t.correct for t in trajectories if t.correct is not None]
        assert len(trajectories) == 20 and len(graded) == 20
        m = metrics["points"][p["name"]]
        assert m["accuracy"] == pytest.approx(sum(graded) / 20)
        assert m["mean_strong_tokens"] == pytest.approx(sum(t.strong_tokens for t in trajectories) / 20)
        assert m["mean_weak_tokens"] == pytest.approx(sum(t.usage.weak.generated_tokens for t in trajectories) / 20)
    strong = list(read_trajectories(run / "trajectories" / "strong.jsonl"))
    assert metrics["references"]["c_strong"] == pytest.approx(sum(t.strong_tokens for t in strong) / 20)
    thr0 = list(read_trajectories(run / "trajectories" / "thr_0.jsonl"))
    assert all(t.strong_tokens == 0 and {s.role for s in t.steps} == {"weak"} for t in thr0)
    assert all(s.score is not None for t in thr0 for s in t.steps)  # scored, never escalated
    # the sweep shares calls: far fewer made than its points would make one by one
    calls = metrics["calls"]
    assert sum(calls["made"].values()) * 3 < sum(calls["alone"].values())
    report = (run / "report.md").read_text()
    assert "Model calls:" in r.output and "query:bert cross-fitted (5 folds)" in report
    assert "query:mf not trained: matrix factorisation learns from problems only one model solves" in report

    rebuilt = invoke("report", str(run), "--bootstrap", "50")
    assert rebuilt.exit_code == 0, rebuilt.output
    assert json.loads((run / "metrics.json").read_text())["points"] == metrics["points"]

    config = tmp_path / "chosen.yaml"
    chosen = invoke("calibrate", str(run), "--target-share", "0.5", "--bootstrap", "50", "--write-config", str(config))
    assert chosen.exit_code == 0, chosen.output
    policy = load_run_config(config).policy
    assert policy.startswith("thr:") and metrics["points"][policy]["strong_share"] <= 0.5
    assert "expected accuracy" in chosen.output


def test_eval_trains_the_baselines_on_a_separate_run(llama_server: LlamaServer, tmp_path: Path) -> None:
    lines = GSM8K.read_text().splitlines(keepends=True)
    train_set = tmp_path / "train.jsonl"
    train_set.write_text("".join(lines[100:110]))  # GSM8K test problems 100-109; the evaluation takes 0-7
    common = (
        "--weak-url", llama_server.base_url, "--weak-model", llama_server.model,
        "--strong-url", llama_server.base_url, "--strong-model", llama_server.model, "--set", "strong.temperature=0.2",
        "--scorer", "confidence", "--set", "engine.weak_logprobs=true",
        "--max-steps", "2", "--set", "engine.max_step_tokens=8", "--bootstrap", "20",
    )  # fmt: skip
    train, run = tmp_path / "train", tmp_path / "run"
    r = invoke("eval", "--dataset", str(train_set), "--methods", "weak", *common, "--out", str(train))
    assert r.exit_code == 0, r.output
    r = invoke(
        "eval", "--dataset", str(GSM8K), "--limit", "8", "--methods", "automix query:sw oracle", "--train", str(train),
        *common, "--out", str(run),
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    trained = f"trained on 10 problems of {train}"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["baseline_training"] == {"automix:prod": trained, "query:sw": trained}
    assert f"query:sw {trained}" in (run / "report.md").read_text() and "trained on 10 problems" in r.output
    # the training run's problems never appear in the evaluation, and it must not share any
    train_ids = set(json.loads((train / "config.json").read_text())["problem_ids"])
    assert not train_ids & set(json.loads((run / "config.json").read_text())["problem_ids"])
    r = CliRunner().invoke(app, ["eval", "--dataset", str(train_set), "--train", str(train), *common, "--out",
                                 str(tmp_path / "same")])  # fmt: skip
    assert r.exit_code == 1 and "shares 10 problem(s) with the evaluation" in r.output


def test_eval_rejects_bad_input_with_one_line(tmp_path: Path) -> None:
    r = CliRunner().invoke(app, ["eval", "--dataset", str(GSM8K), "--methods", "thr:0,0.1,...", "--out", str(tmp_path)])
    assert r.exit_code == 1 and "first,second,...,last" in r.output
    r = CliRunner().invoke(app, ["calibrate", str(tmp_path / "missing"), "--target-pgr", "0.8"])
    assert r.exit_code == 1 and "not a trim eval run directory" in r.output
