from __future__ import annotations

import numpy as np
import pytest

from trimroute.config import BackendConfig, ScorerConfig
from trimroute.engine import EngineConfig
from trimroute.errors import ConfigError
from trimroute.generators import build_generator
from trimroute.policies import parse_policy
from trimroute.runner import simulated_engine
from trimroute.scorers import build_scorer
from trimroute.sim.backend import (
    SimScorer,
    hidden_state,
    is_sim_correct,
    simulated_problems,
)
from trimroute.sim.presets import load_params
from trimroute.types import Action, Trajectory

PARAMS = load_params("qwen1.5b-7b-processbench")  # every problem alike: closed forms below


async def _run(spec: str, n: int, seed: int = 0) -> list[Trajectory]:
    engine = simulated_engine(PARAMS, seed=seed)
    return [t async for t in engine.run(simulated_problems(n), parse_policy(spec))]


def _expected_accuracy(p: float) -> float:
    lengths = np.arange(1, PARAMS.max_steps + 1)
    return float(np.dot(PARAMS.length_pmf, p**lengths))


@pytest.mark.parametrize("spec, role", [("weak", "weak"), ("strong", "strong")])
async def test_accuracy_matches_the_model(spec: str, role: str) -> None:
    trajectories = await _run(spec, 3000)
    acc = np.mean([is_sim_correct(t) for t in trajectories])
    p = getattr(PARAMS, role).next_step_accuracy
    se = np.sqrt(acc * (1 - acc) / len(trajectories))
    assert abs(acc - _expected_accuracy(p)) < 4 * se


async def test_lengths_follow_the_hazard_and_strong_cost_the_token_model() -> None:
    trajectories = await _run("strong", 3000)
    mean_len = np.dot(np.arange(1, PARAMS.max_steps + 1), PARAMS.length_pmf)
    assert np.mean([len(t.steps) for t in trajectories]) == pytest.approx(mean_len, rel=0.05)
    cost = np.mean([t.strong_tokens for t in trajectories])
    assert cost == pytest.approx(mean_len * PARAMS.strong.mean_tokens, rel=0.06)


async def test_hidden_states_follow_the_transition_rules() -> None:
    for t in await _run("thr:0.5", 300):
        states = [hidden_state(s.text) for s in t.steps]
        for before, after in zip(states, states[1:], strict=False):
            assert after == "S1" if before != "S0" else after in ("S0", "S2")
        assert is_sim_correct(t) == (states[-1] == "S0" and t.stop_reason.value == "answer")


async def test_runs_are_reproducible_and_seeds_matter() -> None:
    a, b, c = await _run("thr:0.4", 50), await _run("thr:0.4", 50), await _run("thr:0.4", 50, seed=1)
    assert [t.to_dict()["steps"] for t in a] == [t.to_dict()["steps"] for t in b]
    assert [t.solution for t in a] != [t.solution for t in c]


async def test_scorer_keeps_history_scores_and_min_is_the_running_min() -> None:
    scorer = SimScorer(PARAMS)
    for t in await _run("thr:0.3", 100):
        accepted = list(t.steps)
        full = (await scorer.score(t.problem, accepted)).values
        for i in range(1, len(accepted)):
            assert (await scorer.score(t.problem, accepted[:i])).values == full[:i]
        for step, score in zip(accepted, full, strict=True):
            if step.action is Action.CONTINUE:
                assert step.score == score  # the policy saw the same score the history keeps


async def test_first_step_scores_follow_the_calibrated_table() -> None:
    scorer = SimScorer(PARAMS)
    s0 = [t.steps[0] for t in await _run("weak", 4000) if hidden_state(t.steps[0].text) == "S0"]
    scores = [(await scorer.score(simulated_problems(1)[0], [s])).values[0] for s in s0]
    hist = np.bincount(np.minimum((np.array(scores) * 20).astype(int), 19), minlength=20) / len(scores)
    row = PARAMS.observation.probs[0, 19] / PARAMS.observation.probs[0, 19].sum()  # min-prev = 1.0 at step 1
    assert 0.5 * np.abs(hist - row).sum() < 0.05


async def test_registry_builds_the_simulator_from_config() -> None:
    weak = build_generator(BackendConfig(kind="sim", options={"preset": "qwen1.5b-7b", "role": "weak"}))
    scorer = build_scorer(ScorerConfig(kind="sim", options={"preset": "qwen1.5b-7b"}))
    assert weak.model.startswith("sim:qwen1.5b-7b") and scorer is not None
    with pytest.raises(ConfigError, match="options.role"):
        build_generator(BackendConfig(kind="sim", options={"preset": "qwen1.5b-7b"}))
    with pytest.raises(ConfigError, match="options.preset"):
        build_scorer(ScorerConfig(kind="sim"))


async def test_engine_token_cap_cuts_a_simulated_step() -> None:
    engine = simulated_engine(PARAMS, config=EngineConfig(max_step_tokens=5, max_steps=30))
    t = [t async for t in engine.run(simulated_problems(20), parse_policy("weak"))]
    assert all(x.steps[-1].generated_tokens <= 5 for x in t)
    assert any(x.stop_reason.value == "length" for x in t)


async def test_oracle_router_regenerates_exactly_the_fixable_wrong_proposals() -> None:
    engine = simulated_engine("qwen1.5b-7b", oracle=True)
    runs = [t async for t in engine.run(simulated_problems(300), parse_policy("thr:0.5"))]
    assert all(hidden_state(d.text) == "S2" for t in runs for d in t.discarded)
    kept = [hidden_state(s.text) for t in runs for s in t.steps if s.action is Action.CONTINUE]
    assert "S2" not in kept and sum(len(t.discarded) for t in runs) > 0
    plain = [t async for t in simulated_engine("qwen1.5b-7b").run(simulated_problems(300), parse_policy("thr:0.5"))]
    assert np.mean([is_sim_correct(t) for t in runs]) > np.mean([is_sim_correct(t) for t in plain])
