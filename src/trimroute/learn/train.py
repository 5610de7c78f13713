"""Training TRIM-Agg and TRIM-Seq with stable-baselines3 PPO (DESIGN.md §5; Kapoor et al. §4).

``train_policy`` trains one policy at one λ in the routing environment (``learn.env``), validates it
periodically by routing held-out problems through the same engine with the runtime policy, and keeps the
checkpoint with the best validation return (accuracy − λ·mean strong tokens) as the published artifact
(``policies.artifacts``). ``train_sweep`` does that for several λ, one artifact each: one accuracy–cost curve.

An output folder holds, per λ: ``policy/`` (the artifact), ``checkpoint.zip`` (SB3's, to resume only),
``state.json`` (the validation history), ``tb/`` (TensorBoard logs). Rerunning the same command resumes.
Progress is reported through a callback (``TrainEvent``); the CLI draws it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.vec_env import VecMonitor

from trimroute.config import RunConfig
from trimroute.engine import Engine
from trimroute.errors import ConfigError
from trimroute.learn.env import Grader, RoutingVecEnv
from trimroute.policies.agg import LearnedPolicy
from trimroute.policies.artifacts import save_artifact
from trimroute.policies.features import DEFAULT_FEATURES, FeatureSet, Kind, feature_set
from trimroute.policies.networks import network_spec, policy_kwargs
from trimroute.types import Problem, Trajectory

__all__ = [
    "PPOConfig",
    "TrainConfig",
    "TrainEvent",
    "TrainingSetup",
    "Validation",
    "live_setup",
    "simulated_setup",
    "train_policy",
    "train_sweep",
    "validate",
]

SIM_TRAIN_SET, SIM_VALIDATION_SET = 1000, 2000  # simulated problem sets apart from trim eval's (set 0...)


@dataclass(frozen=True)
class PPOConfig:
    """PPO hyperparameters; the first five are the paper's (DESIGN.md §5)."""

    learning_rate: float = 1e-4
    clip_range: float = 0.2
    ent_coef: float = 0.01
    gamma: float = 1.0
    gae_lambda: float = 0.95
    n_steps: int = 256  # rollout length per environment slot
    batch_size: int = 256
    n_epochs: int = 10  # SB3's default, not the paper's
    normalize_advantage: bool = False  # the paper's Table 3 uses raw advantages (SB3's default is True)


@dataclass(frozen=True)
class TrainConfig:
    """One training run (one λ)."""

    kind: Kind
    lam: float
    steps: int  # environment steps (routing decisions) to train for
    features: str = ""  # feature set name; "" = the kind's default (official / seq)
    n_envs: int = 16  # problems in flight
    eval_every: int = 20_000  # environment steps between validations
    seed: int = 0
    threads: int = 1  # torch threads (the machines this runs on are shared)
    ppo: PPOConfig = field(default_factory=PPOConfig)

    def __post_init__(self) -> None:
        if self.kind not in ("agg", "seq"):
            raise ConfigError(f"policy kind must be 'agg' or 'seq', got {self.kind!r}")
        if not (self.lam >= 0 and math.isfinite(self.lam)):
            raise ConfigError(f"lam must be a finite number >= 0 (price of one strong token), got {self.lam}")
        for name in ("steps", "n_envs", "eval_every", "threads"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.features:
            kind = feature_set(self.features).kind
            if kind != self.kind:
                raise ConfigError(f"feature set {self.features!r} is for {kind} policies, not {self.kind}")

    @property
    def feature_name(self) -> str:
        return self.features or DEFAULT_FEATURES[self.kind]


@dataclass(frozen=True)
class TrainingSetup:
    """Where episodes come from: an engine factory (one fresh engine per run), problems and a grader.

    ``description`` (env, dataset, sizes) is recorded in the artifacts.
    """

    make_engine: Callable[[], Engine]
    train: Sequence[Problem]
    validation: Sequence[Problem]
    grade: Grader
    description: Mapping[str, Any]

    def __post_init__(self) -> None:
        if not self.train or not self.validation:
            raise ConfigError("training needs training and validation problems (got an empty set)")


def simulated_setup(preset: str, train_problems: int, val_problems: int, seed: int) -> TrainingSetup:
    """Episodes from the calibrated simulator of ``preset`` (``sim.backend``)."""
    from trimroute.runner import simulated_engine
    from trimroute.sim.backend import is_sim_correct, simulated_problems
    from trimroute.sim.presets import load_params

    params = load_params(preset)  # fails fast on an unknown preset
    return TrainingSetup(
        make_engine=lambda: simulated_engine(params, seed=seed),
        train=simulated_problems(train_problems, seed=SIM_TRAIN_SET + seed),
        validation=simulated_problems(val_problems, seed=SIM_VALIDATION_SET + seed),
        grade=is_sim_correct,
        description={"env": f"sim:{preset}", "dataset": f"simulated ({train_problems} train, {val_problems} val)"},
    )


def live_setup(config: RunConfig, dataset: str, val_problems: int, seed: int) -> TrainingSetup:
    """Episodes from real models (a run config) on a dataset; the last ``val_problems`` (after a seeded
    shuffle) are held out for validation."""
    from trimroute.data.datasets import load_dataset
    from trimroute.data.grading import grade_trajectory
    from trimroute.runner import build_engine

    if config.scorer.kind == "none":
        raise ConfigError("learned policies need step scores: set scorer.kind in --config or with --set")
    problems = load_dataset(dataset, seed=seed, shuffle=True)
    if len(problems) <= val_problems:
        raise ConfigError(f"{dataset!r} has {len(problems)} problems; need more than --val-problems {val_problems}")
    return TrainingSetup(
        make_engine=lambda: build_engine(config),
        train=problems[:-val_problems],
        validation=problems[-val_problems:],
        grade=lambda t: bool(grade_trajectory(t).correct),
        description={
            "env": "live",
            "dataset": dataset,
            "models": {"weak": config.weak.model, "strong": config.strong.model, "scorer": config.scorer.kind},
        },
    )


@dataclass(frozen=True)
class Validation:
    """A validation result: the return a policy earns per problem at λ (what the best checkpoint maximises)."""

    timesteps: int
    problems: int
    accuracy: float
    strong_tokens: float  # mean per problem
    lam: float

    @property
    def score(self) -> float:
        return self.accuracy - self.lam * self.strong_tokens

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "return": self.score}


def validate(trajectories: Sequence[Trajectory], lam: float, timesteps: int = 0) -> Validation:
    """Accuracy and mean strong tokens of graded trajectories, and the return at ``lam``."""
    return Validation(
        timesteps=timesteps,
        problems=len(trajectories),
        accuracy=float(np.mean([bool(t.correct) for t in trajectories])),
        strong_tokens=float(np.mean([t.strong_tokens for t in trajectories])),
        lam=lam,
    )


class _Validate(BaseCallback):
    """Every ``eval_every`` steps and at the end: validate, keep the best artifact, checkpoint."""

    def __init__(self, run: _Run) -> None:
        super().__init__()
        self.run = run
        self.next_eval = (run.done_steps // run.config.eval_every + 1) * run.config.eval_every

    def _on_step(self) -> bool:
        if self.num_timesteps >= self.next_eval:
            self.next_eval += self.run.config.eval_every
            self.run.validate(self.model)
        return True

    def _on_training_end(self) -> None:
        if self.run.done_steps < self.num_timesteps:
            self.run.validate(self.model)


@dataclass(frozen=True)
class TrainEvent:
    """Where one training run stands: timesteps done of ``total``, and the validation just made (if any)."""

    lam: float
    timesteps: int
    total: int
    validation: Validation | None = None
    best: bool = False  # the validation is the best so far (its checkpoint is the published artifact)


TrainProgress = Callable[[TrainEvent], None]


class _ShowProgress(BaseCallback):
    def __init__(self, config: TrainConfig, on_progress: TrainProgress) -> None:
        super().__init__()
        self.config, self.on_progress = config, on_progress

    def _on_step(self) -> bool:
        self.on_progress(TrainEvent(self.config.lam, self.num_timesteps, self.config.steps))
        return True


@dataclass
class _Run:
    """State of one training run in ``out``: validation history, best result, files."""

    out: Path
    config: TrainConfig
    setup: TrainingSetup
    features: FeatureSet
    venv: RoutingVecEnv
    history: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] | None = None
    on_progress: TrainProgress | None = None

    @property
    def done_steps(self) -> int:
        return self.history[-1]["timesteps"] if self.history else 0

    def artifact_config(self) -> dict[str, Any]:
        return {
            "kind": self.config.kind,
            "features": self.features.to_dict(),
            "lam": self.config.lam,
            "network": network_spec(self.config.kind),
            "training": {
                **self.setup.description,
                "algorithm": "PPO (stable-baselines3)",
                "config": asdict(self.config),
                "train_problems": len(self.setup.train),
                "validation_problems": len(self.setup.validation),
            },
            "validation": {"best": self.best, "history": self.history},
        }

    def validate(self, model: BaseAlgorithm) -> None:
        network = cast(ActorCriticPolicy, model.policy)
        policy = LearnedPolicy(f"{self.config.kind}:training", self.features, network)
        result = validate(self.venv.evaluate(self.setup.validation, policy), self.config.lam, model.num_timesteps)
        record = result.to_dict()
        self.history.append(record)
        improved = self.best is None or result.score > self.best["return"]
        if improved:
            self.best = record
            save_artifact(self.out / "policy", network, self.artifact_config())
        for key in ("accuracy", "strong_tokens", "return"):
            model.logger.record(f"validation/{key}", record[key])
        # the checkpoint and the history move together, so a resumed run continues from a consistent state
        model.save(self.out / "checkpoint.zip")
        state = {"config": asdict(self.config), "history": self.history, "best": self.best}
        tmp = self.out / "state.json.tmp"
        tmp.write_text(json.dumps(state, indent=1) + "\n")
        tmp.replace(self.out / "state.json")
        if self.on_progress is not None:
            self.on_progress(TrainEvent(self.config.lam, model.num_timesteps, self.config.steps, result, improved))


def train_policy(
    setup: TrainingSetup,
    config: TrainConfig,
    out: Path,
    on_progress: TrainProgress | None = None,
) -> dict[str, Any]:
    """Train one policy at ``config.lam`` into ``out``; resume if ``out`` holds a run of the same config.

    Returns the best validation record (also in ``out/policy/config.json``).
    """
    torch.set_num_threads(config.threads)
    out.mkdir(parents=True, exist_ok=True)
    state_file, checkpoint = out / "state.json", out / "checkpoint.zip"
    state: dict[str, Any] = {}
    if state_file.exists() and checkpoint.exists():
        state = json.loads(state_file.read_text())
        # --steps may grow (to train longer); anything else changed means a different run
        same = {**state.get("config", {}), "steps": config.steps} == json.loads(json.dumps(asdict(config)))
        if not same:
            raise ConfigError(f"{str(out)!r} holds a training run with another configuration; use another --out")

    engine = setup.make_engine()
    features = feature_set(config.feature_name, max_steps=engine.config.max_steps)
    venv = RoutingVecEnv(engine, setup.train, features, config.lam, setup.grade, config.n_envs, config.seed)
    run = _Run(out, config, setup, features, venv, list(state.get("history", [])), state.get("best"), on_progress)
    env = VecMonitor(venv)
    try:
        if state:
            model = PPO.load(checkpoint, env=env, device="cpu", tensorboard_log=str(out / "tb"))
        else:
            model = PPO(
                "MlpPolicy",
                env,
                policy_kwargs=policy_kwargs(network_spec(config.kind)),
                tensorboard_log=str(out / "tb"),
                seed=config.seed,
                device="cpu",
                **asdict(config.ppo),
            )
        callbacks: list[BaseCallback] = [_Validate(run)]
        if on_progress is not None:
            on_progress(TrainEvent(config.lam, model.num_timesteps, config.steps))
            callbacks.append(_ShowProgress(config, on_progress))
        remaining = config.steps - model.num_timesteps
        if remaining > 0:
            model.learn(remaining, callback=callbacks, reset_num_timesteps=False, tb_log_name="ppo")
    finally:
        env.close()
    if run.best is None:
        raise ConfigError(f"{str(out)!r}: no validation ran; increase --steps")
    return run.best


def lam_folder(out: Path, lam: float) -> Path:
    return out / f"lam_{lam:g}"


def train_sweep(
    setup: TrainingSetup,
    config: TrainConfig,
    lams: Sequence[float],
    out: Path,
    on_progress: TrainProgress | None = None,
) -> Path:
    """Train one policy per λ (one accuracy–cost curve); write ``out/curve.json`` listing them."""
    if not lams or len(set(lams)) != len(lams):
        raise ConfigError(f"give one or more distinct λ values, got {list(lams)}")
    points = []
    for lam in sorted(lams, reverse=True):
        folder = lam_folder(out, lam)
        best = train_policy(setup, replace(config, lam=lam), folder, on_progress)
        points.append({"lam": lam, "policy": f"{config.kind}:{folder / 'policy'}", "validation": best})
    curve = out / "curve.json"
    curve.write_text(json.dumps({"kind": config.kind, **setup.description, "points": points}, indent=1) + "\n")
    return curve
