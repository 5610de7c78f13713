"""``trim eval``: run a set of methods over a dataset into a run directory (resumable)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.text import Text

from trimroute.cli import app
from trimroute.cli.common import console, handle_errors
from trimroute.cli.display import RichSweepProgress
from trimroute.cli.report import print_results
from trimroute.cli.run import resolve_config
from trimroute.config import RunConfig, sim_config
from trimroute.errors import ConfigError
from trimroute.eval.methods import Method, parse_methods
from trimroute.eval.results import PLOT_NAME
from trimroute.eval.rundir import RunDir
from trimroute.eval.sweep import RayOptions, SweepOptions, evaluate
from trimroute.eval.training import TrainingRun, load_training
from trimroute.types import Problem

DEFAULT_METHODS = "thr:0,0.1,...,1 random:matched automix oracle"


def run_eval(
    config: RunConfig,
    problems: list[Problem],
    methods: list[Method],
    run: RunDir,
    *,
    dataset: dict[str, Any],
    cache: Path | None,
    prices: dict,
    options: SweepOptions,
    training: TrainingRun | None = None,
    ray: RayOptions | None = None,
) -> dict[str, Any]:
    """The sweep with progress bars (and, with ``options.live``, one problem streamed), then its tables."""
    with RichSweepProgress(console) as progress:
        results = asyncio.run(
            evaluate(
                config,
                problems,
                methods,
                run,
                dataset=dataset,
                cache=cache,
                prices=prices,
                options=options,
                progress=progress,
                training=training,
                ray=ray,
            )  # fmt: skip
        )
    print_results(results, options.title, run.config().get("notes"))
    if "invocation" in results:
        calls = results["invocation"]
        console.print(Text(f"this time: {calls['made']} model calls made, {calls['cached']} served from the cache"))
    console.print(Text(f"run directory: {run.path}  ·  plot: {run.path / PLOT_NAME}.png"))
    return results


@app.command("eval")
def eval_(
    dataset: Annotated[
        str | None, typer.Option(help="JSONL file or dataset name (gsm8k-offline, math500, ...).")
    ] = None,
    sim: Annotated[
        str | None,
        typer.Option(help="Simulate both models and the scorer with a calibrated preset (qwen1.5b-7b, ...)."),
    ] = None,
    methods: Annotated[
        list[str] | None,
        typer.Option(help=f"Methods, space-separated or repeated (default: {DEFAULT_METHODS!r}); see docs."),
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Run directory; rerun to resume (default runs/eval.NAME)")] = None,
    config_file: Annotated[Path | None, typer.Option("--config", help="YAML or TOML config; flags override it")] = None,
    weak_url: Annotated[str | None, typer.Option(help="Weak model endpoint, e.g. http://localhost:8000/v1")] = None,
    weak_model: Annotated[str | None, typer.Option(help="Weak model name as served.")] = None,
    strong_url: Annotated[str | None, typer.Option(help="Strong model endpoint.")] = None,
    strong_model: Annotated[str | None, typer.Option(help="Strong model name as served.")] = None,
    api: Annotated[str | None, typer.Option(help="completions (template rendered locally) or chat (pre-fill).")] = None,
    scorer: Annotated[str | None, typer.Option(help="Step scorer kind: qwen-prm, judge, arithmetic, ...")] = None,
    scorer_url: Annotated[str | None, typer.Option(help="Scorer endpoint.")] = None,
    scorer_model: Annotated[str | None, typer.Option(help="Scorer model name.")] = None,
    budget: Annotated[int | None, typer.Option(help="Hard cap on strong tokens per problem.")] = None,
    max_steps: Annotated[int | None, typer.Option(help="Steps per solution (default 30).")] = None,
    seed: Annotated[int | None, typer.Option(help="Sampling seed (default 0); seeded calls are cached.")] = None,
    concurrency: Annotated[int | None, typer.Option(help="Problems in flight.")] = None,
    limit: Annotated[
        int | None, typer.Option(help="Only the first N problems (--sim: N problems, default 1000).")
    ] = None,
    shuffle: Annotated[bool, typer.Option(help="Shuffle the problems (with --seed) before --limit.")] = False,
    problem_field: Annotated[str | None, typer.Option(help="Field holding the problem text (user JSONL).")] = None,
    answer_field: Annotated[str | None, typer.Option(help="Field holding the reference answer.")] = None,
    cache: Annotated[Path | None, typer.Option(help="SQLite call cache (default RUN/cache.sqlite).")] = None,
    no_cache: Annotated[bool, typer.Option(help="Call the models for every point (no call cache).")] = False,
    prices: Annotated[Path | None, typer.Option(help="Price table: model -> {input, output} $ per M tokens.")] = None,
    bootstrap: Annotated[int, typer.Option(help="Bootstrap resamples for confidence intervals.")] = 1000,
    train: Annotated[
        Path | None,
        typer.Option(
            help="Train AutoMix and the query routers on this trim eval run's weak-only and strong-only results "
            "(same models, other problems); default: cross-fit them on the evaluated problems."
        ),
    ] = None,
    router_folds: Annotated[int, typer.Option(help="Cross-fitting folds of the baselines (without --train).")] = 5,
    budget_pilots: Annotated[
        int, typer.Option(help="Random runs the search of each random:matched budget may make.")
    ] = 6,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Set a config key: engine.max_steps=8")] = None,
    live: Annotated[bool, typer.Option(help="Stream one problem of the first step-routing point, step by step.")] = (
        False
    ),
    ray: Annotated[
        str | None,
        typer.Option(
            help="Solve the engine points on this Ray cluster (HOST:PORT or auto), sharded by problem; "
            "thresholds, budget matching and the query-level baselines stay here (docs/ray.md)."
        ),
    ] = None,
    ray_workers: Annotated[
        int | None, typer.Option(help="Worker actors (shards) with --ray; default one per node with a CPU.")
    ] = None,
) -> None:
    """Run methods (weak, strong, thr:0,0.1,...,1, random:matched, automix, query:sw|mf|bert, oracle, any policy)
    over a dataset; write trajectories, metrics.json, report.md and the accuracy–cost plot."""
    from trimroute.data.datasets import load_dataset
    from trimroute.eval.prices import load_prices, role_prices

    with handle_errors():
        if (dataset is None) == (sim is None):
            raise ConfigError("give exactly one of --dataset FILE|NAME or --sim PRESET")
        config = resolve_config(
            config_file, set_ or [], None, base=sim_config(sim) if sim is not None else None,
            weak_url=weak_url, weak_model=weak_model, strong_url=strong_url, strong_model=strong_model, api=api,
            scorer=scorer, scorer_url=scorer_url, scorer_model=scorer_model, budget=budget, max_steps=max_steps,
            seed=seed, concurrency=concurrency,
        )  # fmt: skip
        parsed = parse_methods(methods or [DEFAULT_METHODS])
        if ray_workers is not None and (ray is None or ray_workers < 1):
            raise ConfigError("--ray-workers takes a number >= 1 and needs --ray ADDRESS")
        if bootstrap < 1 or router_folds < 2 or budget_pilots < 1:
            raise ConfigError("--bootstrap and --budget-pilots must be >= 1 and --router-folds >= 2")
        training = load_training(train) if train is not None else None
        data_seed = config.engine.seed or 0
        if sim is not None:
            from trimroute.sim.backend import simulated_problems

            dataset = f"sim:{sim}"
            problems = simulated_problems(limit or 1000, seed=data_seed)
        else:
            assert dataset is not None
            problems = load_dataset(
                dataset, problem_field=problem_field, answer_field=answer_field, limit=limit, seed=data_seed,
                shuffle=shuffle,
            )  # fmt: skip
        run = RunDir(out or Path("runs") / f"eval.{Path(dataset).stem.replace(':', '_')}")
        role_models = {"weak": config.weak.model, "strong": config.strong.model}
        if config.scorer.kind != "none":
            role_models["scorer"] = config.scorer.model
        table = role_prices(load_prices(prices), role_models) if prices else {}  # type: ignore[arg-type]
        data = {"spec": dataset, "limit": limit, "shuffle": shuffle, "seed": data_seed,
                "problem_field": problem_field, "answer_field": answer_field}  # fmt: skip
        cache_path = None if no_cache else (cache or run.path / "cache.sqlite")
        options = SweepOptions(
            n_resamples=bootstrap, router_folds=router_folds, budget_pilots=budget_pilots, seed=data_seed,
            title=f"trim eval · {Path(dataset).name}", live=live,
        )  # fmt: skip
        run_eval(
            config, problems, parsed, run, dataset=data, cache=cache_path, prices=table, options=options,
            training=training, ray=RayOptions(ray, ray_workers) if ray is not None else None,
        )  # fmt: skip
