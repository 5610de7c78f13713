from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from trimroute.errors import DataError
from trimroute.learn.calibrate import CurvePoint, fit_to_curve, thr_curve, warped_observation
from trimroute.policies import parse_policy
from trimroute.runner import simulated_engine
from trimroute.sim.backend import is_sim_correct, simulated_problems
from trimroute.sim.presets import load_params

FITTED = load_params("qwen1.5b-7b")
REFERENCE = Path(__file__).parents[3] / ".." / "shared" / "calibration" / "reference_curves_math500_qwen1.5b_7b.json"


@pytest.mark.parametrize("k", [0.0, 0.1, 0.5, 0.9, 1.0])
async def test_expected_curve_is_what_the_engine_simulates(k: float) -> None:
    spec = {0.0: "weak", 1.0: "strong"}.get(k, f"thr:{k}")
    n = 1500
    engine = simulated_engine(FITTED, seed=5)
    runs = [t async for t in engine.run(simulated_problems(n, seed=5), parse_policy(spec))]
    acc = np.array([is_sim_correct(t) for t in runs], dtype=float)
    tokens = np.array([t.strong_tokens for t in runs], dtype=float)
    calls = np.array([sum(s.action is not None and s.action.value == "regenerate" for s in t.steps) for t in runs])
    (expected,) = thr_curve(FITTED, [k])
    assert abs(acc.mean() - expected.accuracy) < 4 * acc.std() / np.sqrt(n) + 1e-9
    assert abs(tokens.mean() - expected.strong_tokens) <= 4 * tokens.std() / np.sqrt(n) + 1e-9
    assert abs(calls.mean() - expected.strong_calls) <= 4 * calls.std() / np.sqrt(n) + 1e-9


def test_plain_model_end_points_have_closed_forms() -> None:
    plain = load_params("qwen1.5b-7b-processbench")
    steps = np.arange(1, plain.max_steps + 1)
    weak, strong = thr_curve(plain, [0.0, 1.0])
    assert weak.accuracy == pytest.approx(np.dot(plain.length_pmf, plain.weak.next_step_accuracy**steps))
    assert strong.accuracy == pytest.approx(np.dot(plain.length_pmf, plain.strong.next_step_accuracy**steps))
    assert strong.strong_tokens == pytest.approx(np.dot(plain.length_pmf, steps) * plain.strong.mean_tokens)


def test_identity_warp_keeps_the_table_and_a_shift_lowers_scores() -> None:
    obs = load_params("qwen1.5b-7b-processbench").observation
    same = warped_observation(obs, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), "same")
    assert np.allclose(same.conditional, obs.conditional, atol=1e-12)
    lower = warped_observation(obs, (-2.0, 0.0, 0.0), (1.0, 1.0, 1.0), "lower")
    centres = (np.arange(20) + 0.5) / 20
    assert lower.conditional[0, 19] @ centres < obs.conditional[0, 19] @ centres - 0.05
    assert np.allclose(lower.conditional[1:], obs.conditional[1:], atol=1e-12)


@pytest.mark.skipif(not REFERENCE.exists(), reason="needs ../shared/calibration")
def test_fitted_preset_passes_the_gate_in_expectation() -> None:
    """The fast gate: bench/sim_vs_reference.py checks the same targets on the engine at N = 4000."""
    rows = json.loads(REFERENCE.read_text())["trim_thr"]
    curve = thr_curve(FITTED, [round(r["threshold"], 2) for r in rows])
    acc = np.array([r["accuracy"] for r in rows])
    half_ci = 1.96 * np.sqrt(acc * (1 - acc) / 500)
    gap = np.array([c.accuracy for c in curve]) - acc
    assert np.sum(np.abs(gap) <= half_ci) >= 19 and np.abs(gap).max() <= 0.06
    tok = np.array([r["avg_target_tokens_per_question"] for r in rows])
    rel = np.abs(np.array([c.strong_tokens for c in curve])[1:] / tok[1:] - 1)
    assert rel.mean() <= 0.15
    assert abs(curve[-1].accuracy - acc[-1]) <= 0.03


def test_fit_needs_both_end_points() -> None:
    with pytest.raises(DataError, match="weak-only"):
        fit_to_curve(FITTED, [CurvePoint(0.5, 0.6, 100.0)] * 12, 500, "x")
