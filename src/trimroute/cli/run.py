"""``trim run``: route one problem (printed step by step) or a JSONL dataset (resumable)."""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from trimroute.cli import app
from trimroute.cli.common import console, handle_errors
from trimroute.cli.display import print_step
from trimroute.config import RunConfig, load_run_config, parse_override
from trimroute.data.grading import grade_trajectory
from trimroute.errors import ConfigError
from trimroute.policies import parse_policy
from trimroute.runner import build_engine, route
from trimroute.trajectories import TrajectoryWriter
from trimroute.types import Problem, Trajectory


def _overrides(**flags: Any) -> dict[str, Any]:
    """Map CLI flags onto dotted config keys (None = not given, the file's value stands)."""
    keys = {
        "weak_url": "weak.base_url",
        "weak_model": "weak.model",
        "strong_url": "strong.base_url",
        "strong_model": "strong.model",
        "scorer": "scorer.kind",
        "scorer_url": "scorer.base_url",
        "scorer_model": "scorer.model",
        "policy": "policy",
        "budget": "engine.budget",
        "max_steps": "engine.max_steps",
        "seed": "engine.seed",
        "concurrency": "engine.concurrency",
    }
    out = {keys[k]: v for k, v in flags.items() if k in keys}
    if flags.get("api") is not None:
        out["weak.api"] = out["strong.api"] = flags["api"]
    return out


def resolve_config(
    config_file: Path | None, sets: list[str], threshold: float | None, base: RunConfig | None = None, **flags: Any
) -> RunConfig:
    """Base < file < flags < --set, then ``--policy thr --threshold 0.7`` becomes ``thr:0.7``."""
    overrides = _overrides(**flags)
    overrides.update(parse_override(s) for s in sets)
    config = load_run_config(config_file, overrides, base)
    if threshold is not None:
        name, _, arg = config.policy.partition(":")
        if name != "thr":
            raise ConfigError(f"--threshold applies to the threshold policy, not {config.policy!r}; use --policy thr")
        _, colon, modifier = arg.partition(":")  # thr:0.5:keep-final keeps its modifier
        config = replace(config, policy=f"thr:{threshold:g}{colon}{modifier}")
    parse_policy(config.policy)  # validate before any model call
    return config


def _summary(trajectories: list[Trajectory], wall_s: float) -> Table:
    n = len(trajectories)
    graded = [t.correct for t in trajectories if t.correct is not None]
    weak = sum(t.usage.weak.generated_tokens for t in trajectories)
    strong = sum(t.strong_tokens for t in trajectories)
    discarded = sum(t.usage.weak.discarded_tokens for t in trajectories)
    calls = {r: sum(getattr(t.usage, r).calls for t in trajectories) for r in ("weak", "strong", "scorer")}
    table = Table(title="trim run", show_header=False)
    rows = [
        ("problems", str(n)),
        ("accuracy", f"{sum(graded) / len(graded):.1%} of {len(graded)} graded" if graded else "no answers"),
        ("weak tokens (discarded)", f"{weak} ({discarded})"),
        ("strong tokens", f"{strong} ({strong / max(n, 1):.1f} per problem)"),
        # not DESIGN §6's share c (that needs a strong-only run: trim eval reports it)
        ("solution tokens by strong", f"{strong / max(weak - discarded + strong, 1):.1%} of the kept tokens"),
        ("escalated steps", f"{sum(t.escalations for t in trajectories) / max(n, 1):.2f} per problem"),
        ("calls weak / strong / scorer", f"{calls['weak']} / {calls['strong']} / {calls['scorer']}"),
        ("wall time", f"{wall_s:.1f} s"),
    ]
    for k, v in rows:
        table.add_row(k, v)
    return table


async def _run_one(config: RunConfig, problem: Problem, out: Path | None) -> Trajectory:
    engine = build_engine(config)
    try:
        console.print(Text(problem.text + "\n", style="bold"))
        solved = await engine.solve(problem, parse_policy(config.policy), lambda _, step: print_step(console, step))
        t = await asyncio.to_thread(grade_trajectory, solved)
    finally:
        await engine.aclose()
    if out is not None:
        with TrajectoryWriter(out) as writer:
            writer.write(t)
    verdict = {True: Text("correct", style="green"), False: Text("wrong", style="red"), None: Text("")}[t.correct]
    line = Text("answer: ").append(str(t.final_answer), style="bold").append(" ").append(verdict)
    line.append(
        f"  ·  stop: {t.stop_reason.value}  ·  strong tokens {t.strong_tokens}, weak {t.usage.weak.generated_tokens} "
        f"({t.usage.weak.discarded_tokens} discarded), {t.escalations} escalated"
    )
    console.print(line)
    return t


async def _run_dataset(config: RunConfig, problems: list[Problem], out: Path) -> list[Trajectory]:
    t0 = time.perf_counter()
    engine = build_engine(config)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    try:
        with Progress(*columns, console=console, transient=True) as progress:
            task = progress.add_task(config.policy, total=len(problems))
            started = False

            def show(done: int, total: int) -> None:
                nonlocal started
                if not started and done:
                    console.print(Text(f"resuming: {done} of {total} problems already in {out}"))
                started = True
                progress.update(task, completed=done)

            done = await route(engine, problems, parse_policy(config.policy), out=out, on_progress=show)
    finally:
        await engine.aclose()
    console.print(_summary(done, time.perf_counter() - t0))
    console.print(Text(f"trajectories: {out}"))
    return done


def _default_out(dataset: str, policy: str) -> Path:
    return Path("runs") / f"{Path(dataset).stem}.{re.sub(r'[^A-Za-z0-9.=-]+', '_', policy)}.jsonl"


@app.command()
def run(
    problem: Annotated[str | None, typer.Option(help="Solve one problem given as text.")] = None,
    dataset: Annotated[str | None, typer.Option(help="JSONL file or dataset name (see trim eval --help).")] = None,
    config_file: Annotated[
        Path | None, typer.Option("--config", help="YAML or TOML config; flags override it.")
    ] = None,
    weak_url: Annotated[str | None, typer.Option(help="Weak model endpoint, e.g. http://localhost:8000/v1")] = None,
    weak_model: Annotated[str | None, typer.Option(help="Weak model name as served.")] = None,
    strong_url: Annotated[str | None, typer.Option(help="Strong model endpoint.")] = None,
    strong_model: Annotated[str | None, typer.Option(help="Strong model name as served.")] = None,
    api: Annotated[str | None, typer.Option(help="completions (template rendered locally) or chat (pre-fill).")] = None,
    scorer: Annotated[str | None, typer.Option(help="Step scorer kind: qwen-prm, math-shepherd, judge, ...")] = None,
    scorer_url: Annotated[str | None, typer.Option(help="Scorer endpoint.")] = None,
    scorer_model: Annotated[str | None, typer.Option(help="Scorer model name.")] = None,
    policy: Annotated[str | None, typer.Option(help="weak, strong, random:P, thr:K, pomdp:DIR, agg:DIR, ...")] = None,
    threshold: Annotated[float | None, typer.Option(help="Threshold k for --policy thr.")] = None,
    budget: Annotated[int | None, typer.Option(help="Hard cap on strong tokens per problem.")] = None,
    max_steps: Annotated[int | None, typer.Option(help="Steps per solution (default 30).")] = None,
    seed: Annotated[int | None, typer.Option(help="Sampling seed (default 0).")] = None,
    concurrency: Annotated[int | None, typer.Option(help="Problems in flight.")] = None,
    limit: Annotated[int | None, typer.Option(help="Only the first N problems of the dataset.")] = None,
    problem_field: Annotated[str | None, typer.Option(help="Field holding the problem text (user JSONL).")] = None,
    answer_field: Annotated[str | None, typer.Option(help="Field holding the reference answer.")] = None,
    out: Annotated[Path | None, typer.Option(help="Trajectory JSONL; rerunning with the same file resumes.")] = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Override any config key: engine.max_step_tokens=256")
    ] = None,
) -> None:
    """Route one problem or a dataset through weak model, step scorer, policy and strong model."""
    with handle_errors():
        if (problem is None) == (dataset is None):
            raise ConfigError("give exactly one of --problem TEXT or --dataset FILE")
        config = resolve_config(
            config_file, set_ or [], threshold,
            weak_url=weak_url, weak_model=weak_model, strong_url=strong_url, strong_model=strong_model, api=api,
            scorer=scorer, scorer_url=scorer_url, scorer_model=scorer_model, policy=policy, budget=budget,
            max_steps=max_steps, seed=seed, concurrency=concurrency,
        )  # fmt: skip
        if problem is not None:
            if not problem.strip():
                raise ConfigError("--problem is empty; pass the problem text")
            asyncio.run(_run_one(config, Problem(id="problem", text=problem), out))
            return
        from trimroute.data.datasets import load_dataset

        assert dataset is not None
        problems = load_dataset(dataset, problem_field=problem_field, answer_field=answer_field, limit=limit)
        asyncio.run(_run_dataset(config, problems, out or _default_out(dataset, config.policy)))
