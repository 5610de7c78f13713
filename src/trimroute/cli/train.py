"""``trim train agg|seq``: train TRIM-Agg / TRIM-Seq with PPO, in the simulator or against live models."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from trimroute.cli import app
from trimroute.cli.common import console, handle_errors, numbers_option
from trimroute.cli.run import resolve_config
from trimroute.errors import ConfigError


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
    from trimroute.learn.train import (
        PPOConfig,
        TrainConfig,
        TrainEvent,
        lam_folder,
        live_setup,
        simulated_setup,
        train_sweep,
    )

    with handle_errors():
        if kind not in ("agg", "seq"):
            raise ConfigError(f"policy kind must be agg or seq, got {kind!r}")
        lams = numbers_option("--lam", lam, ctx.args)
        name, _, preset = env.partition(":")
        if name == "sim":
            if dataset or config_file or set_:
                raise ConfigError("--dataset, --config and --set apply to --env live; the simulator makes its problems")
            setup = simulated_setup(preset or "qwen1.5b-7b", train_problems, val_problems, seed)
        elif env == "live":
            if not dataset:
                raise ConfigError("--env live needs --dataset (a JSONL file or dataset name) and --config")
            setup = live_setup(resolve_config(config_file, set_ or [], None), dataset, val_problems, seed)
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
            tasks: dict[float, TaskID] = {}

            def show(event: TrainEvent) -> None:
                label = f"{kind} λ={event.lam:g}"
                if event.lam not in tasks:
                    tasks[event.lam] = progress.add_task(label, total=event.total)
                progress.update(tasks[event.lam], completed=event.timesteps)
                if event.validation is not None:
                    note = f" val {event.validation.score:.3f}{' ★' if event.best else ''}"
                    progress.update(tasks[event.lam], description=label + note)

            curve = train_sweep(setup, config, lams, out, show)
        policies = [f"{kind}:{lam_folder(out, x) / 'policy'}" for x in sorted(lams, reverse=True)]
        console.print(f"policies: {' '.join(policies)}")
        console.print(f"curve: {curve}   TensorBoard: tensorboard --logdir {out}")
