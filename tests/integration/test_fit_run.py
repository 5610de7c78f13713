"""``trim fit --run`` on a real small ``trim eval`` run (llama.cpp server, SmolLM2 as both models): the preset
it writes loads and runs in the simulator, and its numbers are what a plain count of the run's files says."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from trimroute.cli import app
from trimroute.learn.calibrate import thr_curve
from trimroute.policies import parse_policy
from trimroute.runner import simulated_engine
from trimroute.sim.backend import is_sim_correct, simulated_problems
from trimroute.sim.presets import load_params
from trimroute.testing.llama_server import LlamaServer

pytestmark = pytest.mark.slow

MAX_STEPS = 3


def invoke(*args: str):
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def mle_accuracy(solutions: list[dict]) -> float:
    """Next-step accuracy maximising sum log P(correct | L) with P = p**L, by a plain grid search."""
    grid = np.linspace(1e-4, 1 - 1e-4, 9999)
    loglik = sum(
        len(t["steps"]) * np.log(grid) if t["correct"] else np.log1p(-(grid ** len(t["steps"]))) for t in solutions
    )
    return float(grid[np.argmax(loglik)])


def per_problem(solutions: list[dict], role: str) -> float:
    """Accepted weak tokens (the steps) or strong tokens (the cost C: all the strong model generated) per problem."""
    if role == "strong":
        return sum(t["usage"]["strong"]["generated_tokens"] for t in solutions) / len(solutions)
    return sum(s["generated_tokens"] for t in solutions for s in t["steps"] if s["role"] == role) / len(solutions)


def test_fit_from_a_real_run(llama_server: LlamaServer, tmp_path: Path) -> None:
    data = tmp_path / "sums.jsonl"  # problems SmolLM2-135M solves sometimes, so that both grades occur
    sums = [(3, 4), (2, 5), (6, 1), (4, 4), (7, 2), (1, 8), (5, 3), (2, 2)]
    rows = [{"id": f"sum{a}{b}", "problem": f"What is {a} + {b}?", "answer": str(a + b)} for a, b in sums]
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    run = tmp_path / "run"
    r = invoke(
        "eval", "--dataset", str(data), "--methods", "thr:0,0.8",
        "--weak-url", llama_server.base_url, "--weak-model", llama_server.model,
        "--strong-url", llama_server.base_url, "--strong-model", llama_server.model,
        "--set", "strong.temperature=0.2", "--scorer", "confidence", "--set", "engine.weak_logprobs=true",
        "--max-steps", str(MAX_STEPS), "--set", "engine.max_step_tokens=16", "--bootstrap", "10", "--out", str(run),
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    out = tmp_path / "mine.json"
    r = invoke("fit", "--run", str(run), "--out", str(out), "--error-threshold", "0.6")
    assert r.exit_code == 0, r.output

    weak, strong = lines(run / "trajectories" / "thr_0.jsonl"), lines(run / "trajectories" / "strong.jsonl")
    thr = lines(run / "trajectories" / "thr_0.8.jsonl")
    # the labelled steps: all correct in a solution graded correct, else the first step scored < 0.6 (or the last)
    expected = {}
    for t in weak:
        scores = [s["score"] for s in t["steps"]]
        low = [i for i, c in enumerate(scores) if c < 0.6]
        expected[t["problem"]["id"]] = (scores, -1 if t["correct"] else (low[0] if low else len(scores) - 1))
    labels = {r["problem_id"]: (r["scores"], r["first_wrong"]) for r in lines(tmp_path / "mine.labels.jsonl")}
    assert labels == expected

    params = load_params(out)
    assert params.name == "mine" and params.max_steps == MAX_STEPS and params.observation.scorer == "confidence"
    assert params.weak.next_step_accuracy == pytest.approx(mle_accuracy(weak), abs=2e-4)
    assert params.strong.next_step_accuracy == pytest.approx(mle_accuracy(strong), abs=2e-4)
    counts = Counter(len(t["steps"]) for t in strong)  # no censoring: Kaplan-Meier is the histogram
    assert params.strong_pmf == pytest.approx([counts[n] / len(strong) for n in range(1, MAX_STEPS + 1)])
    # a wrong step's token factor: mean tokens of the steps labelled wrong over those labelled correct
    right: list[int] = []
    wrong: list[int] = []
    for t in weak:
        first = expected[t["problem"]["id"]][1]
        for i, s in enumerate(t["steps"]):
            (wrong if 0 <= first <= i else right).append(s["generated_tokens"])
    assert params.wrong_token_factor == pytest.approx(np.mean(wrong) / np.mean(right))
    # the simulator's expected weak-only and strong-only tokens per problem are the counted ones
    weak_only, strong_only = thr_curve(params, [0.0, 1.0])
    assert weak_only.weak_tokens == pytest.approx(per_problem(weak, "weak"), rel=1e-9)
    assert strong_only.strong_tokens == pytest.approx(per_problem(strong, "strong"), rel=1e-9)

    # the preset runs in the engine-driven simulator: weak-only accuracy sum_L P(L) p**L, tokens as counted
    weak_counts = Counter(len(t["steps"]) for t in weak)
    p = params.weak.next_step_accuracy
    predicted = sum(c / len(weak) * p**n for n, c in weak_counts.items())

    async def simulate() -> list:
        return [t async for t in simulated_engine(params, seed=1).run(simulated_problems(2000), parse_policy("weak"))]

    import asyncio

    simulated = asyncio.run(simulate())
    accuracy = sum(map(is_sim_correct, simulated)) / len(simulated)
    assert accuracy == pytest.approx(predicted, abs=4 * math.sqrt(predicted * (1 - predicted) / 2000) + 0.01)
    tokens = sum(t.usage.weak.generated_tokens for t in simulated) / len(simulated)
    assert tokens == pytest.approx(per_problem(weak, "weak"), rel=0.1)

    # held out (a quarter by id hash: one problem here): fitted on the others, compared with its files
    r = invoke("fit", "--run", str(run), "--out", str(tmp_path / "half.json"), "--error-threshold", "0.6",
               "--holdout", "0.25")  # fmt: skip
    assert r.exit_code == 0, r.output
    fitted_on = {r["problem_id"] for r in lines(tmp_path / "half.labels.jsonl")}
    report = json.loads((tmp_path / "half.holdout.json").read_text())
    held = {t["problem"]["id"] for t in weak} - fitted_on
    assert report["fit_problems"] == len(fitted_on) and report["heldout_problems"] == len(held) > 0
    points = {p["k"]: p["measured"] for p in report["points"]}
    assert sorted(points) == [0.0, 0.8, 1.0]
    for k, trajectories in ((0.0, weak), (0.8, thr), (1.0, strong)):
        mine = [t for t in trajectories if t["problem"]["id"] in held]
        assert points[k]["accuracy"] == pytest.approx(sum(t["correct"] for t in mine) / len(mine))
        assert points[k]["strong_tokens"] == pytest.approx(per_problem(mine, "strong"))
        assert points[k]["weak_tokens"] == pytest.approx(per_problem(mine, "weak"))
