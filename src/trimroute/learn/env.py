"""The RL environment of TRIM-Agg / TRIM-Seq (DESIGN.md §5): the engine itself, with the agent as its policy.

There is no second routing loop here. Each of the ``n_envs`` slots runs ``Engine.solve`` on one problem
with an agent policy whose ``decide`` returns an unresolved future (the engine awaits awaitable
decisions). ``step_async`` stores the agent's actions; ``step_wait`` resolves every slot's future in the
env's own event loop and runs the loop until each slot has either reached its next decision or finished
its solution, so all problems' model calls of one vector step run concurrently. A finished slot gets
the terminal reward on that very step and is reset to a new problem (SB3 auto-reset: the finished
episode's last observation is in ``info["terminal_observation"]``).

Reward: −λ·(strong tokens generated since the previous decision) — the regenerated step, including a
step cut short by the budget — and +1 on the step that ends a correctly answered solution.

``RoutingEnv`` is the single-problem ``gymnasium.Env`` view of the same machinery (for env checkers and
other RL libraries).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar, cast

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from stable_baselines3.common.vec_env import VecEnv
from stable_baselines3.common.vec_env.base_vec_env import VecEnvIndices, VecEnvStepReturn

from trimroute.engine import Engine
from trimroute.errors import ConfigError
from trimroute.policies.base import Policy
from trimroute.policies.features import FeatureSet
from trimroute.runner import route
from trimroute.types import Action, Observation, Problem, Trajectory

__all__ = ["Grader", "RoutingEnv", "RoutingVecEnv"]

T = TypeVar("T")
Grader = Callable[[Trajectory], bool]
MAX_SILENT_EPISODES = 100  # episodes in a row without any decision before we call the setup broken


@dataclass(eq=False)
class _Slot:
    """One problem in flight: its engine task and the decision it waits on."""

    ready: asyncio.Event
    task: asyncio.Task[Trajectory] | None = None
    obs: Observation | None = None
    decision: asyncio.Future[Action] | None = None
    spent: int = 0  # strong tokens at the pending decision


@dataclass(eq=False)
class _Agent:
    """The engine's policy for one slot: hands each observation to the env and waits for the action."""

    slot: _Slot
    name: str = "rl-agent"
    fixed_action: Action | None = None
    needs_scores: bool = True

    def decide(self, obs: Observation) -> asyncio.Future[Action]:
        future: asyncio.Future[Action] = asyncio.get_running_loop().create_future()
        self.slot.obs, self.slot.decision, self.slot.spent = obs, future, obs.strong_tokens_spent
        self.slot.ready.set()
        return future


@dataclass
class _ProblemStream:
    """Problems in a fresh seeded shuffle every epoch, each with its own sampling seed."""

    problems: Sequence[Problem]
    rng: np.random.Generator
    order: list[int] = field(default_factory=list)

    def next(self) -> tuple[Problem, int]:
        if not self.order:
            self.order = list(self.rng.permutation(len(self.problems)))
        return self.problems[self.order.pop()], int(self.rng.integers(2**31))


async def _gather(coros: Iterable[Coroutine[Any, Any, T]]) -> list[T]:
    """``asyncio.gather`` inside the running loop (outside one it would bind to the wrong loop)."""
    return list(await asyncio.gather(*coros))


class RoutingVecEnv(VecEnv):
    """``n_envs`` problems routed concurrently by one engine, the agent deciding every step (SB3 VecEnv).

    Args:
        engine: the routing engine (live backends or the simulator); the env owns it and closes it.
        problems: training problems, drawn in a seeded shuffle, repeated as needed.
        features: how observations become arrays (``policies.features``).
        lam: λ, the price of one strong token in units of one correct answer.
        grade: whether a finished trajectory is correct.
        n_envs: problems in flight.
        seed: seeds problem order and, with ``resample``, each episode's sampling seed.
        resample: give each episode its own engine seed so repeated problems yield new rollouts.
    """

    def __init__(
        self,
        engine: Engine,
        problems: Sequence[Problem],
        features: FeatureSet,
        lam: float,
        grade: Grader,
        n_envs: int = 8,
        seed: int = 0,
        resample: bool = True,
    ) -> None:
        if not problems:
            raise ConfigError("the RL environment needs at least one training problem")
        if lam < 0 or n_envs < 1:
            raise ConfigError(f"need lam >= 0 and n_envs >= 1, got lam={lam}, n_envs={n_envs}")
        self.engine, self.features, self.lam, self.grade = engine, features, lam, grade
        self.resample = resample
        self.render_mode = None
        self._problems = list(problems)
        self._stream = _ProblemStream(self._problems, np.random.default_rng(seed))
        self._loop = asyncio.new_event_loop()
        self._slots = [_Slot(asyncio.Event()) for _ in range(n_envs)]
        self._actions: np.ndarray | None = None
        super().__init__(n_envs, features.space(), spaces.Discrete(2))

    # -- running coroutines in the env's loop (model clients are bound to it) ---------------------------

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` to completion in the env's event loop; episodes in flight stay paused."""
        return self._loop.run_until_complete(coro)

    def evaluate(self, problems: Iterable[Problem], policy: Policy) -> list[Trajectory]:
        """Route ``problems`` with ``policy`` through the env's engine (base seed) and grade them."""
        return self.run(route(self.engine, problems, policy, grade=lambda t: replace(t, correct=self.grade(t))))

    # -- VecEnv ----------------------------------------------------------------------------------------

    def reset(self) -> np.ndarray:
        if self._seeds[0] is not None:
            self._stream = _ProblemStream(self._problems, np.random.default_rng(self._seeds[0]))
        self._reset_seeds()
        self.run(self._cancel_all())
        obs = self.run(_gather(self._start(slot) for slot in self._slots))
        return np.stack(obs)

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions).reshape(self.num_envs)

    def step_wait(self) -> VecEnvStepReturn:
        if self._actions is None:
            raise RuntimeError("step_wait() called without step_async()")
        actions, self._actions = self._actions, None
        results = self.run(_gather(self._advance(s, int(a)) for s, a in zip(self._slots, actions, strict=True)))
        obs, rewards, dones, infos = zip(*results, strict=True)
        return np.stack(obs), np.array(rewards, dtype=np.float32), np.array(dones), list(infos)

    def close(self) -> None:
        if self._loop.is_closed():
            return
        self.run(self._cancel_all())
        self.run(self.engine.aclose())
        self._loop.close()

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        return [getattr(self, attr_name) for _ in self._indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        setattr(self, attr_name, value)

    def env_method(self, method_name: str, *method_args: Any, indices: VecEnvIndices = None, **kw: Any) -> list[Any]:
        return [getattr(self, method_name)(*method_args, **kw) for _ in self._indices(indices)]

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None) -> list[bool]:
        return [False for _ in self._indices(indices)]

    def _indices(self, indices: VecEnvIndices) -> Sequence[int]:
        if indices is None:
            return range(len(self._slots))  # also called by VecEnv.__init__, before num_envs is set
        return [indices] if isinstance(indices, int) else list(indices)

    # -- episodes ----------------------------------------------------------------------------------------

    async def _start(self, slot: _Slot) -> np.ndarray:
        """Start problems in ``slot`` until one reaches a decision; return its observation."""
        for _ in range(MAX_SILENT_EPISODES):
            problem, seed = self._stream.next()
            engine = self.engine
            if self.resample and engine.config.seed is not None:
                # a twin, not a new engine: every slot's calls queue on the same per-backend limits
                engine = engine.with_config(replace(engine.config, seed=seed))
            slot.ready.clear()
            # the engine awaits the agent's future decisions; Policy types decide() as returning an Action
            slot.task = asyncio.create_task(engine.solve(problem, cast(Policy, _Agent(slot))))
            event = await self._next_event(slot)
            if isinstance(event, Observation):
                return self.features(event)
        raise ConfigError(
            f"{MAX_SILENT_EPISODES} episodes in a row ended without a routing decision; is the strong-token budget 0?"
        )

    async def _advance(self, slot: _Slot, action: int) -> tuple[np.ndarray, float, bool, dict[str, Any]]:
        """Apply ``action`` to the slot's pending decision and run it to the next decision or the end."""
        assert slot.decision is not None and slot.obs is not None
        last_obs, spent = slot.obs, slot.spent
        slot.ready.clear()
        slot.decision.set_result(Action.REGENERATE if action == 1 else Action.CONTINUE)
        event = await self._next_event(slot)
        if isinstance(event, Observation):
            return self.features(event), -self.lam * (event.strong_tokens_spent - spent), False, {}
        correct = self.grade(event)
        reward = -self.lam * (event.strong_tokens - spent) + float(correct)
        info = {
            "terminal_observation": self.features(last_obs),
            "TimeLimit.truncated": False,
            "correct": correct,
            "strong_tokens": event.strong_tokens,
        }
        return await self._start(slot), reward, True, info

    @staticmethod
    async def _next_event(slot: _Slot) -> Observation | Trajectory:
        """The slot's next decision (its observation), or its trajectory when the solution ended."""
        assert slot.task is not None
        ready = asyncio.ensure_future(slot.ready.wait())
        try:
            await asyncio.wait({ready, slot.task}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            ready.cancel()
        if slot.ready.is_set():
            assert slot.obs is not None
            return slot.obs
        return slot.task.result()

    async def _cancel_all(self) -> None:
        tasks = [s.task for s in self._slots if s.task is not None and not s.task.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class RoutingEnv(gym.Env[np.ndarray, np.int64]):
    """One problem at a time: the ``gymnasium.Env`` view of ``RoutingVecEnv`` (same arguments, n_envs=1)."""

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(
        self,
        engine: Engine,
        problems: Sequence[Problem],
        features: FeatureSet,
        lam: float,
        grade: Grader,
        seed: int = 0,
        resample: bool = True,
    ) -> None:
        self.vec = RoutingVecEnv(engine, problems, features, lam, grade, n_envs=1, seed=seed, resample=resample)
        self.observation_space = self.vec.observation_space
        self.action_space = spaces.Discrete(2)
        self._next_obs: np.ndarray | None = None  # the auto-started episode, handed out by reset()

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        if seed is None and self._next_obs is not None:
            obs, self._next_obs = self._next_obs, None
            return obs, {}
        if seed is not None:
            self.vec.seed(seed)
        self._next_obs = None
        return self.vec.reset()[0], {}

    def step(self, action: np.int64) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        batch, rewards, dones, infos = self.vec.step(np.array([action]))
        obs = np.asarray(batch)
        if not dones[0]:
            return obs[0], float(rewards[0]), False, False, infos[0]
        self._next_obs = obs[0]
        return infos[0]["terminal_observation"], float(rewards[0]), True, False, infos[0]

    def close(self) -> None:
        self.vec.close()
