from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from trimroute.errors import DataError
from trimroute.learn.fit import (
    fit_next_step_accuracy,
    fit_observation_model,
    fit_params,
    kaplan_meier_length_pmf,
    observations_from_labels,
)
from trimroute.policies import parse_policy
from trimroute.runner import simulated_engine
from trimroute.sim.backend import is_sim_correct, simulated_problems
from trimroute.sim.presets import load_params
from trimroute.trajectories import TrajectoryWriter

TRUE_PMF = np.array([0.1, 0.2, 0.3, 0.25, 0.15])


def test_kaplan_meier_recovers_lengths_from_censored_data() -> None:
    rng = np.random.default_rng(0)
    lengths = rng.choice(np.arange(1, 6), p=TRUE_PMF, size=20000)
    first_error = rng.integers(1, 6, size=lengths.size)
    censored = first_error <= lengths  # an error happened: only "at least first_error steps" is known
    pmf = kaplan_meier_length_pmf(lengths[~censored].tolist(), first_error[censored].tolist(), max_steps=5)
    assert np.allclose(pmf, TRUE_PMF, atol=0.015)


def test_next_step_accuracy_mle_recovers_p() -> None:
    rng = np.random.default_rng(1)
    lengths = rng.integers(1, 12, size=20000)
    correct = rng.random(lengths.size) < 0.9**lengths
    assert fit_next_step_accuracy(lengths.tolist(), correct.tolist()) == pytest.approx(0.9, abs=0.003)


def _labelled_records(n: int, rng: np.random.Generator) -> list[dict]:
    """Solutions whose scores are Beta-distributed by hidden state: high when correct, low when wrong."""
    records = []
    for _ in range(n):
        steps = int(rng.integers(2, 9))
        first_wrong = int(rng.integers(0, steps)) if rng.random() < 0.5 else -1
        scores = [
            float(rng.beta(8, 2) if first_wrong < 0 or i < first_wrong else rng.beta(2, 6) if i == first_wrong
                  else rng.beta(3, 3))
            for i in range(steps)
        ]  # fmt: skip
        records.append({"scores": scores, "first_wrong": first_wrong})
    return records


def test_observation_model_kde_recovers_the_current_score_marginals() -> None:
    from scipy import stats

    points = observations_from_labels(_labelled_records(3000, np.random.default_rng(2)))
    model = fit_observation_model(points, "synthetic")
    edges = np.linspace(0, 1, 21)
    for k, (a, b) in enumerate([(8, 2), (3, 3), (2, 6)]):
        truth = np.diff(stats.beta(a, b).cdf(edges))
        assert 0.5 * np.abs(model.probs[k].sum(axis=0) - truth).sum() < 0.06
    # after an error the running min is low: S1's min-previous marginal sits below S0's
    centres = (np.arange(20) + 0.5) / 20
    assert model.probs[1].sum(axis=1) @ centres < model.probs[0].sum(axis=1) @ centres - 0.2


def test_labels_need_scores_and_first_wrong() -> None:
    with pytest.raises(DataError, match="first_wrong"):
        observations_from_labels([{"scores": [0.5]}])


async def test_fit_params_recovers_a_simulated_model_pair(tmp_path: Path) -> None:
    truth = load_params("qwen1.5b-7b-processbench")  # the plain model fit_params estimates
    problems = simulated_problems(1500, seed=7)
    for spec in ("weak", "strong"):
        engine = simulated_engine(truth, seed=3)
        with TrajectoryWriter(tmp_path / f"{spec}.jsonl") as w:
            async for t in engine.run(problems, parse_policy(spec)):
                w.write(replace(t, correct=is_sim_correct(t)))
    labels = tmp_path / "labels.jsonl"
    labels.write_text("".join(json.dumps(r) + "\n" for r in _labelled_records(500, np.random.default_rng(3))))
    fitted = fit_params(tmp_path / "weak.jsonl", tmp_path / "strong.jsonl", labels, name="mine")
    assert fitted.weak.next_step_accuracy == pytest.approx(truth.weak.next_step_accuracy, abs=0.01)
    assert fitted.strong.next_step_accuracy == pytest.approx(truth.strong.next_step_accuracy, abs=0.01)
    assert fitted.weak.mean_tokens == pytest.approx(truth.weak.mean_tokens, rel=0.05)
    assert fitted.token_corr == pytest.approx(truth.token_corr, abs=0.1)
    assert np.abs(np.array(fitted.length_pmf) - np.array(truth.length_pmf)).sum() < 0.1


def test_fit_params_rejects_ungraded_runs(tmp_path: Path) -> None:
    import asyncio

    async def write() -> None:
        with TrajectoryWriter(tmp_path / "w.jsonl") as w:
            async for t in simulated_engine("qwen1.5b-7b").run(simulated_problems(3), parse_policy("weak")):
                w.write(t)

    asyncio.run(write())
    with pytest.raises(DataError, match="not graded"):
        fit_params(tmp_path / "w.jsonl", tmp_path / "w.jsonl", tmp_path / "none.jsonl", name="x")
