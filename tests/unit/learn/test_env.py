import asyncio
from dataclasses import dataclass, field

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env

from trimroute.engine import Engine, EngineConfig
from trimroute.errors import ConfigError
from trimroute.learn.env import RoutingEnv, RoutingVecEnv
from trimroute.policies import ThresholdPolicy
from trimroute.policies.features import feature_set
from trimroute.runner import simulated_engine
from trimroute.sim.backend import is_sim_correct, simulated_problems
from trimroute.testing import ScriptedGenerator, ScriptedScorer
from trimroute.types import Generation, Problem, StepRequest

LAM = 0.01
# weak: 2 tokens (score 0.9), 4 tokens (0.1), a final step answering 3 (0.9)
WEAK = ["one two", "wrong three four five", "so \\boxed{3}"]
# strong: 1, 3 and 2 tokens; its final step answers 4, the reference answer
STRONG = ["uno", "right step here", "thus \\boxed{4}"]


def grade(t):
    return t.final_answer == t.problem.answer


def scripted_engine(**config) -> Engine:
    weak, strong = ScriptedGenerator("weak", WEAK), ScriptedGenerator("strong", STRONG)
    return Engine(weak, strong, ScriptedScorer(), EngineConfig(**config))


PROBLEMS = [Problem(f"p{i}", f"problem {i}", "4") for i in range(3)]


def vec_env(n_envs=1, engine=None, features="official") -> RoutingVecEnv:
    return RoutingVecEnv(engine or scripted_engine(), PROBLEMS, feature_set(features), LAM, grade, n_envs=n_envs)


def test_passes_the_sb3_and_gymnasium_env_checkers():
    for check in (check_env, lambda env: gym_check_env(env, skip_render_check=True)):
        env = RoutingEnv(scripted_engine(), PROBLEMS, feature_set("official"), LAM, grade)
        try:
            check(env)
        finally:
            env.close()


def test_rewards_price_strong_tokens_and_pay_the_answer_on_the_last_step():
    env = vec_env()
    try:
        first = env.reset()
        assert first[0][3] == 0.0  # step index 0
        obs, reward, done, info = env.step(np.array([0]))  # keep "one two"
        assert reward[0] == 0.0 and not done[0] and info[0] == {}
        obs, reward, done, _ = env.step(np.array([1]))  # the strong model rewrites step 1 with 3 tokens
        assert isinstance(obs, np.ndarray)
        assert reward[0] == pytest.approx(-LAM * 3) and not done[0]
        np.testing.assert_allclose(obs[0][:2], [0.9, 0.9])  # the rewrite scores 0.9: min of previous is 0.9
        obs, reward, done, info = env.step(np.array([1]))  # regenerating the final proposal ends the solution
        assert isinstance(obs, np.ndarray)
        assert done[0]
        assert reward[0] == pytest.approx(1.0 - LAM * 2)  # terminal reward on the step that ended it
        assert info[0]["correct"] is True and info[0]["strong_tokens"] == 5
        assert info[0]["terminal_observation"][3] == pytest.approx(2 / 30)
        assert obs[0][3] == 0.0  # auto-reset: the next problem's first decision
    finally:
        env.close()


def test_a_wrong_answer_ends_without_reward():
    env = vec_env()
    try:
        env.reset()
        rewards, dones = [], []
        for _ in range(3):
            _, r, d, info = env.step(np.array([0]))
            rewards.append(float(r[0]))
            dones.append(bool(d[0]))
        assert dones == [False, False, True] and rewards == [0.0, 0.0, 0.0]
        assert info[0]["correct"] is False
    finally:
        env.close()


@dataclass
class CountingGenerator:
    """Scripted steps that yield to the loop once, counting calls in flight."""

    inner: ScriptedGenerator
    in_flight: int = 0
    peak: int = 0
    model: str = field(init=False)

    def __post_init__(self) -> None:
        self.model = self.inner.model

    async def generate_step(self, request: StepRequest) -> Generation:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        await asyncio.sleep(0)
        self.in_flight -= 1
        return await self.inner.generate_step(request)

    async def aclose(self) -> None:
        return None


def test_one_vector_step_runs_every_problem_concurrently():
    weak = CountingGenerator(ScriptedGenerator("weak", WEAK))
    strong = CountingGenerator(ScriptedGenerator("strong", STRONG))
    env = vec_env(n_envs=4, engine=Engine(weak, strong, ScriptedScorer()))
    try:
        env.reset()
        assert weak.peak == 4
        env.step(np.ones(4, dtype=int))
        assert strong.peak == 4 and weak.peak == 4
    finally:
        env.close()


def test_seq_observations_grow_with_the_history():
    env = vec_env(features="seq")
    try:
        env.reset()
        obs, *_ = env.step(np.array([1]))
        assert isinstance(obs, np.ndarray)
        assert obs.shape == (1, 30, 4)
        np.testing.assert_allclose(obs[0][:2, 0], [1, 1])
        assert obs[0][0, 3] == 1.0 and not obs[0][2:].any()
    finally:
        env.close()


def test_no_decision_at_all_is_a_config_error():
    env = vec_env(engine=scripted_engine(budget=0))
    try:
        with pytest.raises(ConfigError, match="budget"):
            env.reset()
    finally:
        env.close()


def test_bad_arguments_are_rejected():
    with pytest.raises(ConfigError, match="problem"):
        RoutingVecEnv(scripted_engine(), [], feature_set("official"), LAM, grade)
    with pytest.raises(ConfigError, match="lam"):
        RoutingVecEnv(scripted_engine(), PROBLEMS, feature_set("official"), -1.0, grade)


def test_evaluate_grades_trajectories_of_any_policy():
    env = vec_env()
    try:
        trajectories = env.evaluate(PROBLEMS, ThresholdPolicy(0.5))
    finally:
        env.close()
    assert len(trajectories) == 3
    # threshold 0.5 rewrites only the 0.1-scored step, so the weak final answer 3 stands
    assert all(t.correct is False and t.strong_tokens == 3 for t in trajectories)


def test_simulator_episode_returns_are_the_answer_minus_the_strong_token_price():
    lam = 1e-3
    env = RoutingVecEnv(
        simulated_engine("qwen1.5b-7b"), simulated_problems(50), feature_set("official"), lam, is_sim_correct, n_envs=8
    )
    returns, episodes = np.zeros(8), []
    try:
        env.reset()
        rng = np.random.default_rng(0)
        for _ in range(60):
            obs, rewards, dones, infos = env.step(rng.integers(0, 2, size=8))
            assert isinstance(obs, np.ndarray)
            assert env.observation_space.contains(obs[0])
            returns += rewards
            for i in np.flatnonzero(dones):
                episodes.append((returns[i], infos[i]))
                returns[i] = 0.0
    finally:
        env.close()
    assert len(episodes) > 20
    for total, info in episodes:
        assert total == pytest.approx(float(info["correct"]) - lam * info["strong_tokens"], abs=1e-5)
    assert 0 < np.mean([info["correct"] for _, info in episodes]) < 1
