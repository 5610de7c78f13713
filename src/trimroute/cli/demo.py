"""``trim demo``: real step routing between two catalog models on a plain CPU, offline."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from trimroute.cli import app
from trimroute.cli.common import console, handle_errors
from trimroute.demo import DEFAULT_DATASET, DemoConfig, run_demo
from trimroute.errors import ConfigError


def _floats(text: str | None, what: str) -> tuple[float, ...] | None:
    if text is None:
        return None
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ConfigError(f"--{what} takes comma-separated numbers, e.g. 0.3,0.5; got {text!r}") from None


@app.command()
def demo(
    n: Annotated[int, typer.Option("--n", help="Number of problems.")] = 20,
    dataset: Annotated[str, typer.Option(help="Dataset name or JSONL path.")] = DEFAULT_DATASET,
    weak: Annotated[str, typer.Option(help="Weak model: catalog name or .gguf path.")] = DemoConfig.weak,
    strong: Annotated[str, typer.Option(help="Strong model: catalog name or .gguf path.")] = DemoConfig.strong,
    scorer: Annotated[
        str, typer.Option(help="likelihood[:mean|min], confidence[:mean|min], arithmetic, composite:ARTIFACT.")
    ] = DemoConfig.scorer,
    thresholds: Annotated[
        str | None, typer.Option(help="TRIM-Thr thresholds, e.g. 0.4,0.5 (default: quantiles of weak step scores).")
    ] = None,
    quantiles: Annotated[str, typer.Option(help="Share of weak steps each default threshold escalates.")] = (
        "0.1,0.25,0.4"
    ),
    random_baseline: Annotated[bool, typer.Option(help="Also run random routing at each threshold's budget.")] = True,
    out: Annotated[Path, typer.Option(help="Output folder (trajectories, call cache, plot).")] = Path("trim-demo"),
    seed: Annotated[int, typer.Option(help="Sampling seed.")] = 0,
    threads: Annotated[int | None, typer.Option(help="llama.cpp threads (default: all cores).")] = None,
    max_steps: Annotated[int, typer.Option(help="Steps per solution at most.")] = DemoConfig.max_steps,
    max_step_tokens: Annotated[int, typer.Option(help="Tokens per step at most.")] = DemoConfig.max_step_tokens,
) -> None:
    """Route GSM8K steps between two local models on the CPU and compare with weak-only, strong-only and random."""
    with handle_errors():
        cfg = DemoConfig(
            weak=weak,
            strong=strong,
            scorer=scorer,
            dataset=dataset,
            n=n,
            thresholds=_floats(thresholds, "thresholds"),
            quantiles=_floats(quantiles, "quantiles") or (),
            random_baseline=random_baseline,
            out=out,
            seed=seed,
            n_threads=threads,
            max_steps=max_steps,
            max_step_tokens=max_step_tokens,
        )
        run_demo(cfg, console)
