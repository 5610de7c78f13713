"""The one driver around the engine (DESIGN.md §3): build it from a ``RunConfig``, route problems to a file.

``build_engine`` turns a configuration into an engine, behind the call cache when given one; ``route``
routes problems with one policy, grades each trajectory and, with ``out``, appends it to a trajectory file
that a rerun resumes. ``trim run``, ``trim eval`` (and so ``trim demo``), the RL environment's validation,
the server and the bench scripts all go through here.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

from trimroute.config import EngineConfig, RunConfig, identity
from trimroute.data.grading import grade_trajectory
from trimroute.engine import Engine, StepCallback
from trimroute.generators import build_generator
from trimroute.generators.base import Generator
from trimroute.generators.cache import CachedGenerator
from trimroute.policies.base import Policy
from trimroute.scorers import build_scorer
from trimroute.scorers.base import Scorer
from trimroute.scorers.cache import CachedScorer
from trimroute.sim.backend import SimGenerator, SimScorer
from trimroute.sim.presets import SimParams, load_params
from trimroute.store import CallStore
from trimroute.trajectories import TrajectoryWriter, read_trajectories
from trimroute.types import ROLES, Problem, Trajectory

__all__ = [
    "Grader",
    "ProgressCallback",
    "Solver",
    "build_backends",
    "build_engine",
    "cached_engine",
    "resolved",
    "route",
    "simulated_engine",
]

Grader = Callable[[Trajectory], Trajectory]
ProgressCallback = Callable[[int, int], None]  # (problems done, problems in all), resumed ones included


class Solver(Protocol):
    """What ``route`` routes with: an ``Engine``, or ``eval.ray_shards.RayShards`` (the engines of a Ray cluster)."""

    def run(
        self, problems: Iterable[Problem], policy: Policy, on_step: StepCallback | None = None
    ) -> AsyncIterator[Trajectory]: ...


# scorers that read the question the way the models saw it: they score with the run's prompt format
PROMPTED_SCORERS = frozenset({"qwen-prm", "hf-prm", "likelihood"})


def resolved(config: RunConfig) -> RunConfig:
    """``config`` with what one section takes from another filled in: a prompted scorer's ``options.prompt``
    is the engine's prompt format unless set (so a PRM's system turn is the run's instruction)."""
    scorer = config.scorer
    if scorer.kind in PROMPTED_SCORERS and "prompt" not in scorer.options and "system" not in scorer.options:
        scorer = replace(scorer, options={**scorer.options, "prompt": config.engine.prompt})
    return replace(config, scorer=scorer)


def build_backends(config: RunConfig) -> tuple[Generator, Generator, Scorer | None]:
    """The weak and strong generators and the scorer; one generator object when both roles are one endpoint."""
    config = resolved(config)
    weak = build_generator(config.weak)
    strong = weak if config.strong == config.weak else build_generator(config.strong)
    return weak, strong, build_scorer(config.scorer)


def build_engine(config: RunConfig, *, cache: CallStore | None = None) -> Engine:
    """The engine of ``config``; with ``cache``, every call goes through it, keyed by each role's identity."""
    engine = Engine(*build_backends(config), config.engine)
    if cache is None:
        return engine
    config = resolved(config)  # the scorer's key holds the prompt format it scores with
    return cached_engine(engine, cache, {role: identity(getattr(config, role)) for role in ROLES})


def cached_engine(engine: Engine, store: CallStore, params: Mapping[str, Mapping[str, Any]] | None = None) -> Engine:
    """``engine`` with its weak, strong and scorer calls through ``store``; ``params`` maps a role to what,
    besides the request, decides its output (``config.identity`` of its backend)."""
    params = params or {}
    return engine.wrapped(
        lambda role, generator: CachedGenerator(generator, store, role, params.get(role)),
        lambda scorer: CachedScorer(scorer, store, params.get("scorer")),
    )


async def route(
    engine: Solver,
    problems: Iterable[Problem],
    policy: Policy,
    *,
    out: str | Path | None = None,
    grade: Grader | None = grade_trajectory,
    on_progress: ProgressCallback | None = None,
    on_step: StepCallback | None = None,
) -> list[Trajectory]:
    """Route ``problems`` with ``policy`` and return their graded trajectories, in order.

    With ``out``, each trajectory is appended to that JSONL file as it finishes, and problems already in
    it are not routed again (a rerun resumes; their saved trajectories are returned). ``grade`` runs off
    the event loop (math-verify may take a while); None leaves trajectories ungraded.
    """
    problems = list(problems)
    routed: dict[str, Trajectory] = {}
    writer = TrajectoryWriter(out) if out is not None else None
    try:
        todo = [p for p in problems if writer is None or p.id not in writer.done]
        done = len(problems) - len(todo)
        if on_progress is not None:
            on_progress(done, len(problems))
        async for trajectory in engine.run(todo, policy, on_step):
            if grade is not None:
                trajectory = await asyncio.to_thread(grade, trajectory)
            if writer is not None:
                writer.write(trajectory)
            routed[trajectory.problem.id] = trajectory
            done += 1
            if on_progress is not None:
                on_progress(done, len(problems))
    finally:
        if writer is not None:
            writer.close()
    if out is not None and len(routed) < len(problems):
        wanted = {p.id for p in problems} - set(routed)
        routed.update((t.problem.id, t) for t in read_trajectories(out) if t.problem.id in wanted)
    return [routed[p.id] for p in problems]


def simulated_engine(
    preset: str | SimParams, seed: int | None = 0, config: EngineConfig | None = None, oracle: bool = False
) -> Engine:
    """An ``Engine`` whose weak, strong and scorer are the simulator of ``preset`` (name, path or params).

    ``config`` defaults to the official rules with the preset's max steps; ``seed`` overrides its seed;
    ``oracle`` swaps in the oracle scorer (run it with ``thr:0.5``).
    Stable interface: used by the POMDP evaluation, RL training and the simulator benches.
    """
    params = preset if isinstance(preset, SimParams) else load_params(preset)
    # the simulated text is synthetic, but its draws are keyed by the prompt: ``trim-v0`` is the format the
    # fitted presets and every simulated result in docs/ were produced with
    base = config or EngineConfig(max_steps=params.max_steps, concurrency=64, prompt="trim-v0")
    return Engine(
        weak=SimGenerator(params, "weak"),
        strong=SimGenerator(params, "strong"),
        scorer=SimScorer(params, oracle=oracle),
        config=replace(base, seed=seed),
    )
