"""``run_sweep``: every method of ``trim eval`` over one dataset into one run directory.

Engine-run points (weak, strong, every policy point, random at matched budget) go through the one
routing loop (``Engine.run``) behind the call cache, so the points of a sweep share every identical
prefix: the engine seeds each call from its exact prefix, and a repeated call is a cache hit. The
query-level baselines (AutoMix-PRM, query routers, oracle) are assembled from the weak-only and
strong-only trajectories with the same cost accounting (``eval.derived``). Then the metrics, the
Markdown report and the plot are written from the saved trajectories (``eval.results``).

The sweep is generic over how the engine was built (real servers, a simulator): it takes an ``Engine``,
or a ``RunConfig`` through ``evaluate`` (what ``trim eval`` and ``trim demo`` call). Progress, and the steps of
one problem streamed live, are reported through ``SweepProgress``; the CLI draws them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from trimroute._version import __version__
from trimroute.config import RunConfig, run_identity, to_dict
from trimroute.engine import Engine
from trimroute.errors import ConfigError, DataError
from trimroute.eval import derived
from trimroute.eval.methods import (
    AutoMix,
    MatchedRandom,
    Method,
    Oracle,
    PolicyPoints,
    QuantileThresholds,
    QueryRouter,
)
from trimroute.eval.metrics import Price
from trimroute.eval.results import PointData, compute_metrics, write_results
from trimroute.eval.rundir import PointEntry, RunDir
from trimroute.policies import parse_policy
from trimroute.runner import build_engine, route
from trimroute.store import CallStore
from trimroute.types import Problem, Role, Step, Trajectory, Usage

__all__ = ["SweepOptions", "SweepProgress", "evaluate", "finish_run", "quantile_thresholds", "run_sweep"]


@dataclass(frozen=True)
class SweepOptions:
    """Knobs of the sweep that do not change its trajectories."""

    n_resamples: int = 1000  # bootstrap resamples for the confidence intervals
    router_folds: int = 5  # cross-fitting folds of the query routers
    seed: int = 0  # bootstrap and fold assignment
    title: str = "trim eval"
    live: bool = False  # stream one problem of the first step-routing point (SweepProgress.live / .step)


class SweepProgress:
    """What a sweep reports as it goes; every method is a no-op here (subclass what you draw).

    ``point`` starts a point (``done`` of ``total`` problems already in its file); ``advance`` finishes one
    problem; ``grow`` adds problems to the whole sweep's count. With ``SweepOptions.live``, ``live`` names the
    problem streamed next and how it was picked, and ``step`` hands over each of its accepted steps.
    """

    def point(self, name: str, total: int, done: int) -> None:
        return None

    def advance(self) -> None:
        return None

    def grow(self, extra: int) -> None:
        return None

    def live(self, point: str, problem: Problem, why: str) -> None:
        return None

    def step(self, problem: Problem, step: Step) -> None:
        return None


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
        progress: SweepProgress,
    ) -> None:
        self.engine, self.problems, self.run, self.store = engine, problems, run, store
        self.options, self.progress = options, progress
        self.ids = [p.id for p in problems]
        self._embeddings: Any = None
        self.live_shown = not options.live

    async def engine_point(self, spec: str, method: str, live: tuple[Problem, str] | None = None) -> list[Trajectory]:
        """Run one policy over the problems not yet in its file; return all of its trajectories.

        ``live``: a problem to route first with its steps streamed, and why it was picked."""
        policy = parse_policy(spec)
        entry = self.run.add_point(policy.name, method)
        problems, on_step = list(self.problems), None
        if live is not None:
            problem, why = live
            problems = [problem, *(p for p in problems if p.id != problem.id)]
            self.progress.live(policy.name, problem, why)

            def on_step(p: Problem, step: Step) -> None:
                if p.id == problem.id:
                    self.progress.step(p, step)

        started = False

        def on_progress(done: int, total: int) -> None:
            nonlocal started
            if not started:
                started = True
                self.progress.point(entry.name, total, done)
            else:
                self.progress.advance()

        await route(self.engine, problems, policy, out=self.run.file(entry), on_progress=on_progress, on_step=on_step)
        return self.point(entry)

    def point(self, entry: PointEntry) -> list[Trajectory]:
        by_id = {t.problem.id: t for t in self.run.trajectories(entry)}
        return [by_id[i] for i in self.ids if i in by_id]

    def derived_points(self, method: str, names_and_routes: Sequence[tuple[str, Callable[[int], Trajectory]]]) -> None:
        """Write each derived point unless its file is already complete (it is a pure function of inputs)."""
        self.progress.grow(len(names_and_routes))
        self.progress.point(method, len(names_and_routes), 0)
        for name, derive in names_and_routes:
            entry = self.run.add_point(name, method)
            if [t.problem.id for t in self.point(entry)] != self.ids:
                path = self.run.file(entry)
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_name(path.name + ".tmp")
                tmp.write_text("".join(derive(i).to_json() + "\n" for i in range(len(self.ids))), encoding="utf-8")
                tmp.replace(path)
            self.progress.advance()

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
    prices: Mapping[Role, Price] | None = None,
    options: SweepOptions | None = None,
    progress: SweepProgress | None = None,
) -> dict[str, Any]:
    """Run ``methods`` over ``problems`` into ``run`` (resuming what is there) and return its metrics.

    ``setup`` describes how ``engine`` was built (models, scorer, engine rules) and the dataset; it is
    saved in ``config.json`` and must match when the run resumes. ``store`` is the call cache the engine's
    calls go through (``runner.build_engine(config, cache=store)``): its counters go to ``calls.json``.
    """
    options = options or SweepOptions()
    progress = progress or SweepProgress()
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
    n = len(problems)
    progress.grow(n * sum(len(m.specs) for m in methods if isinstance(m, PolicyPoints)))
    sweep = _Sweep(engine, problems, run, store, options, progress)
    results: dict[str, list[list[Trajectory]]] = {}
    for method in methods:
        if isinstance(method, PolicyPoints):
            points = await _timed(sweep, method.family, _policy_points(sweep, method))
        elif isinstance(method, QuantileThresholds):
            points = await _timed(sweep, "thr", _quantile_points(sweep, method))
        else:
            continue
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


async def evaluate(
    config: RunConfig,
    problems: Sequence[Problem],
    methods: Sequence[Method],
    run: RunDir,
    *,
    dataset: Mapping[str, Any],
    cache: str | Path | None = None,
    prices: Mapping[Role, Price] | None = None,
    options: SweepOptions | None = None,
    progress: SweepProgress | None = None,
) -> dict[str, Any]:
    """``trim eval``: ``run_sweep`` with the engine built from ``config``, behind the call cache at ``cache``
    (the result then also says how many calls this invocation made and took from the cache).

    The run resumes only with the same dataset and the same ``config.run_identity`` (endpoints, timeouts,
    thread counts and concurrency may change between invocations)."""
    setup = {
        "trimroute_version": __version__,
        "dataset": dict(dataset),
        "setup": run_identity(config),
        "run_config": to_dict(config),
    }
    store = CallStore(cache) if cache is not None else None
    engine = build_engine(config, cache=store)
    try:
        results = await run_sweep(
            engine, problems, methods, run, setup=setup, store=store, prices=prices, options=options,
            progress=progress,
        )  # fmt: skip
        if store is not None:  # this invocation's calls (metrics.json sums every invocation's)
            stats = store.stats.values()
            results["invocation"] = {"made": sum(s.misses for s in stats), "cached": sum(s.hits for s in stats)}
        return results
    finally:
        await engine.aclose()
        if store is not None:
            store.close()


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
    points = []
    for spec in method.specs:
        live = None
        if not sweep.live_shown and parse_policy(spec).fixed_action is None:
            sweep.live_shown = True
            live = (sweep.problems[0], "the first problem of the dataset")
        points.append(await sweep.engine_point(spec, method.family, live))
    return points


def quantile_thresholds(scores: Sequence[float], quantiles: Sequence[float]) -> tuple[float, ...]:
    """Thresholds that would escalate about ``q`` of the weak steps, rounded, deduplicated, ascending."""
    if not scores:
        raise ConfigError(
            "no weak step was scored, so quantile thresholds cannot be set; give thresholds instead "
            "(thr:0.5 in --methods, or trim demo --thresholds 0.5)"
        )
    values = np.quantile(np.asarray(scores), list(quantiles))
    # significant digits, not decimals: min-token probabilities can all lie below 0.001
    return tuple(sorted({float(f"{v:.3g}") for v in values}))


async def _quantile_points(sweep: _Sweep, method: QuantileThresholds) -> list[list[Trajectory]]:
    """``thr:0`` (it scores every weak step and keeps them all: weak-only with scores), then TRIM-Thr at the
    quantiles of those scores. The thresholds are saved with the run, so ``trim report`` needs no rerun."""
    sweep.progress.grow(len(sweep.problems))
    scored = await sweep.engine_point("thr:0", "thr")
    scores = [s.score for t in scored for s in t.steps if s.score is not None]
    thresholds = quantile_thresholds(scores, method.quantiles)
    sweep.run.note("quantile_thresholds", {f"{q:g}": k for q, k in zip(method.quantiles, thresholds, strict=False)})
    sweep.progress.grow(len(thresholds) * len(sweep.problems))
    points = [scored]
    for k in thresholds:
        live = None
        if not sweep.live_shown:
            sweep.live_shown = True
            live = _regenerating_problem(sweep.problems, scored, k)
        points.append(await sweep.engine_point(f"thr:{k:g}", "thr", live))
    return points


def _regenerating_problem(problems: Sequence[Problem], scored: Sequence[Trajectory], k: float) -> tuple[Problem, str]:
    """The first problem whose weak solution has a step scored below ``k``: TRIM-Thr regenerates there (the
    prefix up to that step is the same, and so are its calls), so the stream shows routing at work."""
    low = [t.problem.id for t in scored if any(s.score is not None and s.score < k for s in t.steps)]
    if not low:
        return problems[0], f"the first problem: no weak step scored below {k:g}, so nothing is regenerated"
    first = next(p for p in problems if p.id in low)
    return first, (
        f"the first problem (dataset order) whose weak solution has a step scored below k = {k:g}, "
        f"so TRIM-Thr regenerates at least one step there ({len(low)} of {len(problems)} problems have one)"
    )


async def _matched_random(
    sweep: _Sweep, method: MatchedRandom, thr: Sequence[Sequence[Trajectory]], strong: Sequence[Trajectory]
) -> None:
    """Random routing with p = C̄(thr point) / C̄(strong-only): the same mean strong-token budget."""
    c_strong = sum(t.strong_tokens for t in strong) / len(strong)
    if c_strong <= 0:
        raise DataError("the strong-only run produced no strong tokens: cannot match a budget")
    matches: dict[float, str] = {}  # p -> the (first) thr point whose budget it matches
    for point in thr:
        p = round(min(1.0, sum(t.strong_tokens for t in point) / len(point) / c_strong), 3)
        if p > 0:  # random:0 is weak-only again
            matches.setdefault(p, point[0].policy)
    sweep.progress.grow(len(matches) * len(sweep.problems))
    for p in sorted(matches):
        await sweep.engine_point(f"random:{p:g}", method.family)
    sweep.run.note("matched_random", {f"random:{p:g}": matches[p] for p in sorted(matches)})


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
    write_results(run.path, results, options.title)
    return results


def _spec_text(method: Method) -> str:
    if isinstance(method, PolicyPoints):
        return " ".join(method.specs)
    if isinstance(method, QuantileThresholds):
        return method.spec
    if isinstance(method, AutoMix | QueryRouter):
        values = "" if method.thresholds is None else ":" + ",".join(f"{t:g}" for t in method.thresholds)
        return method.family + values
    return method.family
