"""``run_sweep``: every method of ``trim eval`` over one dataset into one run directory.

Engine-run points (weak, strong, every policy point, random at matched budget) go through the one
routing loop (``Engine.run``) behind the call cache, so the points of a sweep share every identical
prefix: the engine seeds each call from its exact prefix, and a repeated call is a cache hit. The
query-level baselines (AutoMix-PRM, query routers, oracle) are assembled from the weak-only and
strong-only trajectories with the same cost accounting (``eval.derived``). Then the metrics, the
Markdown report and the plot are written from the saved trajectories (``eval.results``).

The sweep is generic over how the engine was built (real servers, a simulator): it takes an ``Engine``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from trimroute.data.grading import grade_trajectory
from trimroute.engine import Engine
from trimroute.errors import ConfigError, DataError
from trimroute.eval import derived
from trimroute.eval.methods import AutoMix, MatchedRandom, Method, Oracle, PolicyPoints, QueryRouter
from trimroute.eval.metrics import Price
from trimroute.eval.results import PointData, compute_metrics, plot_run, render_markdown
from trimroute.eval.rundir import PointEntry, RunDir, write_json
from trimroute.generators.cache import cached_engine
from trimroute.policies import parse_policy
from trimroute.store import CallStore
from trimroute.trajectories import TrajectoryWriter
from trimroute.types import Problem, Role, Trajectory, Usage

__all__ = ["SweepOptions", "finish_run", "run_sweep"]

PLOT_NAME = "accuracy_cost"


@dataclass(frozen=True)
class SweepOptions:
    """Knobs of the sweep that do not change its trajectories."""

    n_resamples: int = 1000  # bootstrap resamples for the confidence intervals
    router_folds: int = 5  # cross-fitting folds of the query routers
    seed: int = 0  # bootstrap and fold assignment
    title: str = "trim eval"


class _Bars:
    """One bar for the whole sweep, one for the method running now (both with ETA)."""

    def __init__(self, console: Console | None, total: int) -> None:
        self.progress = Progress(
            TextColumn("{task.description:<28}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=console,
            disable=console is None,
            transient=False,
        )
        self.overall: TaskID = self.progress.add_task("all methods", total=total)
        self.current: TaskID | None = None

    def start(self, name: str, total: int, done: int) -> None:
        if self.current is not None:
            self.progress.remove_task(self.current)
        self.current = self.progress.add_task(name, total=total, completed=done)
        self.progress.advance(self.overall, done)

    def advance(self, n: int = 1) -> None:
        assert self.current is not None
        self.progress.advance(self.current, n)
        self.progress.advance(self.overall, n)

    def grow(self, extra: int) -> None:
        total = self.progress.tasks[self.overall].total or 0
        self.progress.update(self.overall, total=total + extra)


def _stats_delta(store: CallStore | None, before: Mapping[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    if store is None:
        return {}
    out = {}
    for role, stats in store.stats.items():
        now, was = stats.to_dict(), before.get(role, {})
        out[role] = {k: v - was.get(k, 0) for k, v in now.items()}
    return out


def _snapshot(store: CallStore | None) -> dict[str, dict[str, int]]:
    return {r: s.to_dict() for r, s in store.stats.items()} if store is not None else {}


class _Sweep:
    def __init__(
        self,
        engine: Engine,
        problems: Sequence[Problem],
        run: RunDir,
        store: CallStore | None,
        options: SweepOptions,
        bars: _Bars,
    ) -> None:
        self.engine, self.problems, self.run, self.store = engine, problems, run, store
        self.options, self.bars = options, bars
        self.ids = [p.id for p in problems]
        self._embeddings: Any = None

    async def engine_point(self, spec: str, method: str) -> list[Trajectory]:
        """Run one policy over the problems not yet in its file; return all of its trajectories."""
        policy = parse_policy(spec)
        entry = self.run.add_point(policy.name, method)
        with TrajectoryWriter(self.run.file(entry)) as writer:
            todo = [p for p in self.problems if p.id not in writer.done]
            self.bars.start(entry.name, len(self.problems), len(self.problems) - len(todo))
            async for t in self.engine.run(todo, policy):
                writer.write(await asyncio.to_thread(grade_trajectory, t))
                self.bars.advance()
        return self.point(entry)

    def point(self, entry: PointEntry) -> list[Trajectory]:
        by_id = {t.problem.id: t for t in self.run.trajectories(entry)}
        return [by_id[i] for i in self.ids if i in by_id]

    def derived_points(self, method: str, names_and_routes: Sequence[tuple[str, Callable[[int], Trajectory]]]) -> None:
        """Write each derived point unless its file is already complete (it is a pure function of inputs)."""
        self.bars.grow(len(names_and_routes))
        self.bars.start(method, len(names_and_routes), 0)
        for name, route in names_and_routes:
            entry = self.run.add_point(name, method)
            if [t.problem.id for t in self.point(entry)] != self.ids:
                path = self.run.file(entry)
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_name(path.name + ".tmp")
                tmp.write_text("".join(route(i).to_json() + "\n" for i in range(len(self.ids))), encoding="utf-8")
                tmp.replace(path)
            self.bars.advance()

    def embeddings(self) -> Any:
        from trimroute.eval.query_router import embed

        if self._embeddings is None:
            self._embeddings = embed([p.text for p in self.problems])
        return self._embeddings


async def run_sweep(
    engine: Engine,
    problems: Sequence[Problem],
    methods: Sequence[Method],
    run: RunDir,
    *,
    setup: Mapping[str, Any],
    store: CallStore | None = None,
    cache_params: Mapping[str, Mapping[str, Any]] | None = None,
    prices: Mapping[Role, Price] | None = None,
    options: SweepOptions | None = None,
    console: Console | None = None,
) -> dict[str, Any]:
    """Run ``methods`` over ``problems`` into ``run`` (resuming what is there) and return its metrics.

    ``setup`` describes how ``engine`` was built (models, scorer, engine rules) and the dataset; it is
    saved in ``config.json`` and must match when the run resumes. With ``store``, every model and
    scorer call goes through the call cache (``cache_params`` adds sampling parameters to its keys).
    """
    options = options or SweepOptions()
    if not problems:
        raise DataError("the dataset has no problems")
    run.start(
        {
            **setup,
            "problem_ids": [p.id for p in problems],
            "methods": [_spec_text(m) for m in methods],
            "prices": {r: [p.input_per_million, p.output_per_million] for r, p in (prices or {}).items()},
        }
    )
    _check_scorer(engine, methods)
    if store is not None:
        engine = cached_engine(engine, store, cache_params)
    n = len(problems)
    engine_points = sum(len(m.specs) for m in methods if isinstance(m, PolicyPoints))
    bars = _Bars(console, engine_points * n)
    sweep = _Sweep(engine, problems, run, store, options, bars)
    with bars.progress:
        results: dict[str, list[list[Trajectory]]] = {}
        for method in methods:
            if isinstance(method, PolicyPoints):
                points = await _timed(sweep, method.family, _policy_points(sweep, method))
                results.setdefault(method.family, []).extend(points)
        weak, strong = results["weak"][0], results["strong"][0]
        for method in methods:
            if isinstance(method, MatchedRandom):
                await _timed(sweep, method.family, _matched_random(sweep, method, results["thr"], strong))
            elif isinstance(method, AutoMix):
                await _timed(sweep, method.family, _automix(sweep, method, weak, strong))
            elif isinstance(method, QueryRouter):
                await _timed(sweep, method.family, _query_router(sweep, method, weak, strong))
            elif isinstance(method, Oracle):
                sweep.derived_points("oracle", [("oracle", lambda i: derived.oracle(weak[i], strong[i]))])
    return finish_run(run, prices=prices, options=options)


def _check_scorer(engine: Engine, methods: Sequence[Method]) -> None:
    """Fail before any model call when a method needs step scores and no scorer is configured."""
    if engine.scorer is not None:
        return
    for method in methods:
        specs = method.specs if isinstance(method, PolicyPoints) else ()
        needs = isinstance(method, AutoMix) or any(
            (p := parse_policy(s)).needs_scores and p.fixed_action is None for s in specs
        )
        if needs:
            raise ConfigError(f"method {method.family!r} needs step scores: configure a step scorer (--scorer)")


async def _timed(sweep: _Sweep, method: str, work: Any) -> Any:
    """Await ``work`` and add its cache counters and wall time to ``calls.json``."""
    before, t0 = _snapshot(sweep.store), time.perf_counter()
    result = await work
    delta = _stats_delta(sweep.store, before)
    sweep.run.add_calls(method, {**delta, "time": {"wall_ms": round(1000 * (time.perf_counter() - t0))}})
    return result


async def _policy_points(sweep: _Sweep, method: PolicyPoints) -> list[list[Trajectory]]:
    return [await sweep.engine_point(spec, method.family) for spec in method.specs]


async def _matched_random(
    sweep: _Sweep, method: MatchedRandom, thr: Sequence[Sequence[Trajectory]], strong: Sequence[Trajectory]
) -> None:
    """Random routing with p = C̄(thr point) / C̄(strong-only): the same mean strong-token budget."""
    c_strong = sum(t.strong_tokens for t in strong) / len(strong)
    if c_strong <= 0:
        raise DataError("the strong-only run produced no strong tokens: cannot match a budget")
    ps = sorted({round(min(1.0, sum(t.strong_tokens for t in point) / len(point) / c_strong), 3) for point in thr})
    sweep.bars.grow(len(ps) * len(sweep.problems))
    for p in ps:
        await sweep.engine_point(f"random:{p:g}", method.family)


def _scorer_usage(calls: int, prompt_tokens: int, generated_tokens: int) -> Usage:
    return Usage().add("scorer", calls=calls, prompt_tokens=prompt_tokens, generated_tokens=generated_tokens)


async def _automix(sweep: _Sweep, method: AutoMix, weak: list[Trajectory], strong: list[Trajectory]) -> None:
    """AutoMix-PRM: the scorer judges each whole weak solution; below the threshold, strong answers in full."""
    assert sweep.engine.scorer is not None  # checked before the sweep started
    limit = sweep.engine.config.backend_concurrency.get("scorer", 8)
    scores = await derived.automix_scores(sweep.engine.scorer, weak, concurrency=limit)
    scored = [
        replace(w, steps=tuple(replace(s, score=v) for s, v in zip(w.steps, scores[w.problem.id].values, strict=True)))
        for w in weak
    ]
    aggregates = [derived.aggregate(scores[w.problem.id].values, method.aggregate) for w in weak]
    usage = [_scorer_usage(s.calls, s.prompt_tokens, s.generated_tokens) for s in (scores[w.problem.id] for w in weak)]

    def point(threshold: float) -> tuple[str, Callable[[int], Trajectory]]:
        name = derived.threshold_name(method.family, threshold)
        return name, lambda i: derived.route_whole(
            scored[i], strong[i], aggregates[i] < threshold, name, weak_first=True, extra=usage[i],
            meta={"router_score": aggregates[i]},
        )  # fmt: skip

    thresholds = method.thresholds or derived.default_thresholds(aggregates)
    sweep.derived_points(method.family, [point(t) for t in thresholds])


async def _query_router(sweep: _Sweep, method: QueryRouter, weak: list[Trajectory], strong: list[Trajectory]) -> None:
    """A classifier trained on other folds predicts weak success; below the threshold, strong answers."""
    from trimroute.eval.query_router import cross_fitted_success

    if any(w.correct is None for w in weak):
        raise DataError(f"{method.family} learns from graded weak-only results: the dataset needs reference answers")
    labels = [bool(w.correct) for w in weak]
    embeddings = await asyncio.to_thread(sweep.embeddings)
    success = cross_fitted_success(
        method.kind, embeddings, labels, folds=sweep.options.router_folds, seed=sweep.options.seed
    )

    def point(threshold: float) -> tuple[str, Callable[[int], Trajectory]]:
        name = derived.threshold_name(method.family, threshold)
        return name, lambda i: derived.route_whole(
            weak[i], strong[i], bool(success[i] < threshold), name, weak_first=False,
            meta={"router_score": float(success[i])},
        )  # fmt: skip

    thresholds = method.thresholds or derived.default_thresholds([float(s) for s in success])
    sweep.derived_points(method.family, [point(t) for t in thresholds])


def finish_run(
    run: RunDir, *, prices: Mapping[Role, Price] | None = None, options: SweepOptions | None = None
) -> dict[str, Any]:
    """Compute metrics from the saved trajectories; write metrics.json, report.md and the plot."""
    options = options or SweepOptions()
    if prices is None:
        prices = {r: Price(*v) for r, v in run.config().get("prices", {}).items()}
    points = [PointData(p.name, p.method, run.trajectories(p)) for p in run.points]
    results = compute_metrics(
        points, prices=prices or None, cache_calls=run.calls(), n_resamples=options.n_resamples, seed=options.seed
    )
    write_json(run.path / "metrics.json", results)
    (run.path / "report.md").write_text(render_markdown(results, options.title), encoding="utf-8")
    plot_run(results, run.path / PLOT_NAME, title=options.title)
    return results


def _spec_text(method: Method) -> str:
    if isinstance(method, PolicyPoints):
        return " ".join(method.specs)
    if isinstance(method, AutoMix | QueryRouter):
        values = "" if method.thresholds is None else ":" + ",".join(f"{t:g}" for t in method.thresholds)
        return method.family + values
    return method.family
