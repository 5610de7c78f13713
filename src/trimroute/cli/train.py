"""``trim train agg|seq``: train TRIM-Agg / TRIM-Seq with PPO, in the simulator or against live models."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from trimroute.cli import app
from trimroute.cli.common import console, handle_errors, numbers_option
from trimroute.errors import ConfigError

if TYPE_CHECKING:  # torch loads only when a training command runs
    from trimroute.learn.train import TrainingSetup

SIM_TRAIN_SET, SIM_VALIDATION_SET = 1000, 2000  # simulated problem sets apart from trim eval's (set 0...)


def sim_setup(preset: str, train_problems: int, val_problems: int, seed: int) -> TrainingSetup:
    """Episodes from the calibrated simulator of ``preset`` (``learn.simulator``)."""
    from trimroute.learn.presets import load_params
    from trimroute.learn.simulator import is_sim_correct, simulated_engine, simulated_problems
    from trimroute.learn.train import TrainingSetup

    params = load_params(preset)  # fails fast on an unknown preset
    return TrainingSetup(
        make_engine=lambda: simulated_engine(params, seed=seed),
        train=simulated_problems(train_problems, seed=SIM_TRAIN_SET + seed),
        validation=simulated_problems(val_problems, seed=SIM_VALIDATION_SET + seed),
        grade=is_sim_correct,
        description={"env": f"sim:{preset}", "dataset": f"simulated ({train_problems} train, {val_problems} val)"},
    )


def live_setup(config_file: Path | None, sets: list[str], dataset: str, val_problems: int, seed: int) -> TrainingSetup:
    """Episodes from real models (a run config) on a dataset; the last ``val_problems`` (after a seeded
    shuffle) are held out for validation."""
    from trimroute.build import build_engine
    from trimroute.cli.run import resolve_config
    from trimroute.data.datasets import load_dataset
    from trimroute.data.grading import grade_trajectory
    from trimroute.learn.train import TrainingSetup

    config = resolve_config(config_file, sets, None)
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


@app.command(context_settings={"allow_extra_args": True})
def train(
    ctx: typer.Context,
    kind: Annotated[str, typer.Argument(help="agg (TRIM-Agg, aggregated features) or seq (TRIM-Seq, transformer).")],
    lam: Annotated[list[float], typer.Option(help="λ per strong token; several values train one policy each.")],
    env: Annotated[str, typer.Option(help="sim:PRESET (calibrated simulator) or live (--config models).")] = (
        "sim:qwen1.5b-7b"
    ),
    out: Annotated[Path, typer.Option(help="Output folder; rerunning the same command resumes.")] = Path("runs/train"),
    steps: Annotated[int, typer.Option(help="Environment steps (routing decisions) per λ.")] = 200_000,
    dataset: Annotated[str | None, typer.Option(help="live: JSONL file or dataset name to train on.")] = None,
    config_file: Annotated[Path | None, typer.Option("--config", help="live: run config (models, scorer).")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="live: override a config key.")] = None,
    features: Annotated[str | None, typer.Option(help="Feature set: official, paper, budget (agg); seq.")] = None,
    n_envs: Annotated[int, typer.Option(help="Problems in flight.")] = 16,
    eval_every: Annotated[int, typer.Option(help="Steps between validations (best one is kept).")] = 20_000,
    train_problems: Annotated[int, typer.Option(help="sim: simulated training problems.")] = 5000,
    val_problems: Annotated[int, typer.Option(help="Validation problems (live: held out of --dataset).")] = 500,
    rollout: Annotated[int, typer.Option(help="PPO rollout steps per problem slot.")] = 256,
    seed: Annotated[int, typer.Option(help="Seed of PPO, problem order and sampling.")] = 0,
) -> None:
    """Train routing policies with PPO; one artifact per λ (``--policy agg:OUT/lam_L/policy``)."""
    from trimroute.learn.train import PPOConfig, TrainConfig, lam_folder, train_sweep

    with handle_errors():
        if kind not in ("agg", "seq"):
            raise ConfigError(f"policy kind must be agg or seq, got {kind!r}")
        lams = numbers_option("--lam", lam, ctx.args)
        name, _, preset = env.partition(":")
        if name == "sim":
            if dataset or config_file or set_:
                raise ConfigError("--dataset, --config and --set apply to --env live; the simulator makes its problems")
            setup = sim_setup(preset or "qwen1.5b-7b", train_problems, val_problems, seed)
        elif env == "live":
            if not dataset:
                raise ConfigError("--env live needs --dataset (a JSONL file or dataset name) and --config")
            setup = live_setup(config_file, set_ or [], dataset, val_problems, seed)
        else:
            raise ConfigError(f"--env must be sim:PRESET or live, got {env!r}")
        config = TrainConfig(
            kind=kind,  # type: ignore[arg-type]  # checked above
            lam=lams[0],
            steps=steps,
            features=features or "",
            n_envs=n_envs,
            eval_every=eval_every,
            seed=seed,
            ppo=PPOConfig(n_steps=rollout, batch_size=min(256, rollout * n_envs)),
        )
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
        )
        with Progress(*columns, console=console) as progress:
            curve = train_sweep(setup, config, lams, out, progress)
        policies = [f"{kind}:{lam_folder(out, x) / 'policy'}" for x in sorted(lams, reverse=True)]
        console.print(f"policies: {' '.join(policies)}")
        console.print(f"curve: {curve}   TensorBoard: tensorboard --logdir {out}")
