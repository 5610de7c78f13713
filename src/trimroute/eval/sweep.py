"""``run_sweep``: every method of ``trim eval`` over one dataset into one run directory.

Engine-run points (weak, strong, every policy point, random at matched budget) go through the one
routing loop (``Engine.run``) behind the call cache, so the points of a sweep share every identical
prefix: the engine seeds each call from its exact prefix, and a repeated call is a cache hit. The
query-level baselines (AutoMix-PRM, query routers, oracle) are assembled from the weak-only and
strong-only trajectories with the same cost accounting (``eval.derived``); they are trained on a separate
training run when one is given (``eval.training``) and cross-fitted on the evaluated problems otherwise.
Then the metrics, the Markdown report and the plot are written from the saved trajectories
(``eval.results``).

The sweep is generic over how the engine was built (real servers, a simulator): it takes an ``Engine``,
or a ``RunConfig`` through ``evaluate`` (what ``trim eval`` and ``trim demo`` call). Progress, and the steps of
one problem streamed live, are reported through ``SweepProgress``; the CLI draws them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from trimroute._version import __version__
from trimroute.config import RunConfig, run_identity, to_dict
from trimroute.data.grading import grade_trajectory
from trimroute.engine import Engine
from trimroute.errors import ConfigError, DataError
from trimroute.eval import derived
from trimroute.eval.baselines import Embedder, examples_from, memoized, score_baseline
from trimroute.eval.baselines.base import minilm
from trimroute.eval.matching import match_budget
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
from trimroute.eval.training import TrainingRun
from trimroute.policies import final_modifier, parse_policy
from trimroute.runner import Grader, Solver, build_engine, route
from trimroute.store import CallStore
from trimroute.types import Problem, Role, Scores, Step, Trajectory, Usage

__all__ = ["RayOptions", "SweepOptions", "SweepProgress", "evaluate", "finish_run", "quantile_thresholds", "run_sweep"]


@dataclass(frozen=True)
class SweepOptions:
    """Knobs of the sweep that do not change its trajectories."""

    n_resamples: int = 1000  # bootstrap resamples for the confidence intervals
    router_folds: int = 5  # cross-fitting folds of the query-level baselines (without a training run)
    budget_pilots: int = 6  # random runs the search of one matched budget may make (eval.matching)
    seed: int = 0  # bootstrap and fold assignment
    title: str = "trim eval"
    live: bool = False  # stream one problem of the first step-routing point (SweepProgress.live / .step)


@dataclass(frozen=True)
class RayOptions:
    """``trim eval --ray``: the cluster's address (``HOST:PORT`` or ``auto``) and how many worker actors
    (shards) to run; None = one per node with a CPU."""

    address: str
    workers: int | None = None


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
        training: TrainingRun | None,
        shards: Solver | None = None,
    ) -> None:
        self.engine, self.problems, self.run, self.store = engine, problems, run, store
        # where engine points are solved; Ray workers grade their own trajectories (eval.ray_shards)
        self.solver: Solver = shards if shards is not None else engine
        self.grade: Grader | None = None if shards is not None else grade_trajectory
        self.options, self.progress, self.training = options, progress, training
        self.ids = [p.id for p in problems]
        self.embed: Embedder = memoized(minilm)  # SW and MF embed the same problems
        self.live_shown = not options.live

    async def engine_point(
        self, spec: str, method: str, live: tuple[Problem, str] | None = None, *, register: bool = True
    ) -> list[Trajectory]:
        """Run one policy over the problems not yet in its file; return all of its trajectories.

        ``live``: a problem to route first with its steps streamed, and why it was picked. ``register``:
        add the point to its method's curve (a budget search's pilot keeps its file but joins no curve)."""
        policy = parse_policy(spec)
        entry = self.run.add_point(policy.name, method) if register else self.run.entry(policy.name, method)
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

        await route(
            self.solver, problems, policy, out=self.run.file(entry), grade=self.grade, on_progress=on_progress,
            on_step=on_step,
        )  # fmt: skip
        return self.point(entry)

    def point(self, entry: PointEntry) -> list[Trajectory]:
        by_id = {t.problem.id: t for t in self.run.trajectories(entry)}
        return [by_id[i] for i in self.ids if i in by_id]

    def derived_points(self, method: str, names_and_routes: Sequence[tuple[str, Callable[[int], Trajectory]]]) -> None:
        """Write the points of a derived curve, replacing the curve's earlier points: they are cheap and
        depend on how the router was trained, which may differ from the last invocation."""
        self.progress.grow(len(names_and_routes))
        self.progress.point(method, len(names_and_routes), 0)
        for name, derive in names_and_routes:
            path = self.run.file(self.run.add_point(name, method))
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text("".join(derive(i).to_json() + "\n" for i in range(len(self.ids))), encoding="utf-8")
            tmp.replace(path)
            self.progress.advance()
        self.run.drop_points(method, [name for name, _ in names_and_routes])

    def trained(self, family: str, training: str) -> None:
        """Record how a baseline was trained (``notes.baseline_training``; the report prints it)."""
        notes = self.run.config().get("notes", {}).get("baseline_training", {})
        self.run.note("baseline_training", {**notes, family: training})


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
    training: TrainingRun | None = None,
    shards: Solver | None = None,
) -> dict[str, Any]:
    """Run ``methods`` over ``problems`` into ``run`` (resuming what is there) and return its metrics.

    ``setup`` describes how ``engine`` was built (models, scorer, engine rules) and the dataset; it is
    saved in ``config.json`` and must match when the run resumes. ``store`` is the call cache the engine's
    calls go through (``runner.build_engine(config, cache=store)``): its counters go to ``calls.json``.
    ``training``: the run the query-level baselines learn from (``setup["setup"]`` must be its setup;
    no shared problem); without it they are cross-fitted on ``problems``. ``shards``: where the engine
    points are solved instead of ``engine`` (``RayShards``, whose workers grade and whose calls reach
    ``store``); what needs every problem at once (quantile thresholds, budget matching, AutoMix's
    verifier, the query routers) still runs here.
    """
    options = options or SweepOptions()
    progress = progress or SweepProgress()
    if not problems:
        raise DataError("the dataset has no problems")
    if training is not None:
        training.check([p.id for p in problems], setup)
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
    sweep = _Sweep(engine, problems, run, store, options, progress, training, shards)
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
    training: TrainingRun | None = None,
    ray: RayOptions | None = None,
) -> dict[str, Any]:
    """``trim eval``: ``run_sweep`` with the engine built from ``config``, behind the call cache at ``cache``
    (the result then also says how many calls this invocation made and took from the cache). With ``ray``,
    the engine points run on the actors of that Ray cluster (``eval.ray_shards``), the rest here.

    The run resumes only with the same dataset and the same ``config.run_identity`` (endpoints, timeouts,
    thread counts and concurrency may change between invocations)."""
    setup = {
        "trimroute_version": __version__,
        "dataset": dict(dataset),
        "setup": run_identity(config),
        "run_config": to_dict(config),
    }
    if ray is not None and options is not None and options.live:
        raise ConfigError("--live streams steps from this process: it cannot be used with --ray")
    store = CallStore(cache) if cache is not None else None
    engine = build_engine(config, cache=store)
    connected, shards = False, None
    try:
        if ray is not None:
            from trimroute.cluster import connect
            from trimroute.eval.ray_shards import RayShards

            connected = connect(ray.address)
            shards = await RayShards.start(config, store, ray.workers)
        results = await run_sweep(
            engine, problems, methods, run, setup=setup, store=store, prices=prices, options=options,
            progress=progress, training=training, shards=shards,
        )  # fmt: skip
        if store is not None:  # this invocation's calls (metrics.json sums every invocation's)
            stats = store.stats.values()
            results["invocation"] = {"made": sum(s.misses for s in stats), "cached": sum(s.hits for s in stats)}
        return results
    finally:
        if shards is not None:
            await shards.aclose()
        if connected:
            from trimroute.cluster import disconnect

            disconnect(connected)
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
    """Random routing at each thr point's mean strong tokens: p searched by bisection (``match_budget``)
    from p = C̄(thr) / C̄(strong-only). Pilot runs keep their files (a rerun makes no call) but join no
    curve; the closest p of each search is the point, and ``notes.budget_matches`` says how close it is."""
    c_strong = _mean_strong_tokens(strong)
    if c_strong <= 0:
        raise DataError("the strong-only run produced no strong tokens: cannot match a budget")

    modifier = final_modifier(method.keep_final)

    async def spent(p: float) -> float:
        sweep.progress.grow(len(sweep.problems))
        return _mean_strong_tokens(await sweep.engine_point(f"random:{p:g}{modifier}", method.family, register=False))

    matches: dict[str, str] = {}  # random point -> the (first) thr point whose budget it matches
    searches: dict[str, Any] = {}
    for point in thr:
        target = _mean_strong_tokens(point)
        if target <= 0:  # thr:0 and thresholds that never fire: random:0 is weak-only again
            continue
        found = await match_budget(
            spent, target, first=min(1.0, target / c_strong), max_pilots=sweep.options.budget_pilots
        )
        name = sweep.run.add_point(f"random:{found.p:g}{modifier}", method.family).name
        matches.setdefault(name, point[0].policy)
        key = f"{point[0].policy} vs {method.family}" if method.keep_final else point[0].policy
        searches[key] = {
            "thr": point[0].policy, "random": name, "target": found.target, "achieved": found.budget,
            "matched": found.matched, "pilots": [list(pb) for pb in found.pilots], "describe": found.describe(),
        }  # fmt: skip
    sweep.run.drop_points(method.family, list(matches))
    # both random families add to the same notes: this one's replace what a resumed run had, the entries
    # naming another family's registered points stay
    notes = sweep.run.config().get("notes", {})
    other = {p.name for p in sweep.run.points if p.method != method.family}
    others = {k: v for k, v in notes.get("matched_random", {}).items() if k in other}
    other_searches = {k: v for k, v in notes.get("budget_matches", {}).items() if v.get("random") in other}
    sweep.run.note("matched_random", {**others, **matches})
    sweep.run.note("budget_matches", {**other_searches, **searches})


def _mean_strong_tokens(trajectories: Sequence[Trajectory]) -> float:
    return sum(t.strong_tokens for t in trajectories) / len(trajectories)


def _scorer_usage(calls: int, prompt_tokens: int, generated_tokens: int) -> Usage:
    return Usage().add("scorer", calls=calls, prompt_tokens=prompt_tokens, generated_tokens=generated_tokens)


async def _verifier(sweep: _Sweep, weak: Sequence[Trajectory], how: str) -> tuple[dict[str, Scores], dict[str, float]]:
    """AutoMix's verifier: the scorer's step scores of each weak solution and their aggregate, by problem id."""
    assert sweep.engine.scorer is not None  # checked before the sweep started
    limit = sweep.engine.config.backend_concurrency.get("scorer", 8)
    scores = await derived.automix_scores(sweep.engine.scorer, weak, concurrency=limit)
    return scores, {i: derived.aggregate(s.values, how) for i, s in scores.items()}


async def _baseline(
    sweep: _Sweep,
    name: str,
    family: str,
    weak: Sequence[Trajectory],
    strong: Sequence[Trajectory],
    verifier: Callable[[Sequence[Trajectory]], Awaitable[Mapping[str, float]]] | None = None,
) -> np.ndarray | None:
    """Scores of the evaluated problems by baseline ``name``, trained on the training run when there is
    one and cross-fitted otherwise; ``verifier`` gives AutoMix's verifier score of each weak solution.

    None when the training data cannot train it (e.g. matrix factorisation without a problem that only
    one model solves): the curve is left out and the report says why, instead of failing the sweep."""
    evaluation, outcomes = examples_from(weak, strong, await verifier(weak) if verifier else None)
    train = None
    if sweep.training is not None:
        t = sweep.training
        train = examples_from(t.weak, t.strong, await verifier(t.weak) if verifier else None)
    folds, seed = sweep.options.router_folds, sweep.options.seed
    try:
        result = await asyncio.to_thread(
            score_baseline, name, evaluation, train=train, evaluation_outcomes=outcomes, embed=sweep.embed,
            folds=folds, seed=seed,
        )  # fmt: skip
    except DataError as e:
        sweep.trained(family, f"not trained: {e}")
        sweep.run.drop_points(family, [])
        return None
    sweep.trained(family, sweep.training.describe() if sweep.training is not None else result.training)
    return result.scores


def _whole_problem_points(
    sweep: _Sweep, family: str, scores: np.ndarray, thresholds: Sequence[float] | None,
    route: Callable[[int, bool, str], Trajectory],
) -> None:  # fmt: skip
    """One derived point per threshold t: problem i goes to the strong model where ``scores[i] >= t``."""

    def point(t: float) -> tuple[str, Callable[[int], Trajectory]]:
        name = derived.threshold_name(family, t)
        return name, lambda i: route(i, bool(scores[i] >= t), name)

    cuts = thresholds or derived.default_thresholds([float(v) for v in scores])
    sweep.derived_points(family, [point(t) for t in cuts])


async def _automix(sweep: _Sweep, method: AutoMix, weak: list[Trajectory], strong: list[Trajectory]) -> None:
    """AutoMix-PRM: the weak model answers, the scorer judges the whole solution, and the POMDP trained on
    the training split escalates (the strong model answers in full) where P(only strong solves it) >= t."""
    step_scores, aggregates = await _verifier(sweep, weak, method.aggregate)

    async def verifier(trajectories: Sequence[Trajectory]) -> Mapping[str, float]:
        return aggregates if trajectories is weak else (await _verifier(sweep, trajectories, method.aggregate))[1]

    scores = await _baseline(sweep, "automix", method.family, weak, strong, verifier)
    if scores is None:
        return
    scored = [
        replace(
            w, steps=tuple(replace(s, score=v) for s, v in zip(w.steps, step_scores[w.problem.id].values, strict=True))
        )
        for w in weak
    ]
    usage = [
        _scorer_usage(s.calls, s.prompt_tokens, s.generated_tokens) for s in (step_scores[w.problem.id] for w in weak)
    ]

    def route(i: int, to_strong: bool, name: str) -> Trajectory:
        meta = {"router_score": float(scores[i]), "verifier_score": aggregates[weak[i].problem.id]}
        return derived.route_whole(scored[i], strong[i], to_strong, name, weak_first=True, extra=usage[i], meta=meta)

    _whole_problem_points(sweep, method.family, scores, method.thresholds, route)


async def _query_router(sweep: _Sweep, method: QueryRouter, weak: list[Trajectory], strong: list[Trajectory]) -> None:
    """A RouteLLM router decides from the problem text alone: strong-only where its score >= t."""
    scores = await _baseline(sweep, method.kind, method.family, weak, strong)
    if scores is None:
        return

    def route(i: int, to_strong: bool, name: str) -> Trajectory:
        meta = {"router_score": float(scores[i])}
        return derived.route_whole(weak[i], strong[i], to_strong, name, weak_first=False, meta=meta)

    _whole_problem_points(sweep, method.family, scores, method.thresholds, route)


def finish_run(
    run: RunDir, *, prices: Mapping[Role, Price] | None = None, options: SweepOptions | None = None
) -> dict[str, Any]:
    """Compute metrics from the saved trajectories; write metrics.json, report.md and the plot."""
    options = options or SweepOptions()
    if prices is None:
        prices = {r: Price(*v) for r, v in run.config().get("prices", {}).items()}
    # in dataset order, not the order problems finished in: the bootstrap resamples by position, so the
    # intervals would otherwise depend on concurrency, resumes and Ray workers
    order = {i: n for n, i in enumerate(run.config().get("problem_ids", []))}

    def saved(entry: PointEntry) -> list[Trajectory]:
        return sorted(run.trajectories(entry), key=lambda t: order.get(t.problem.id, len(order)))

    points = [PointData(p.name, p.method, saved(p)) for p in run.points]
    results = compute_metrics(
        points, prices=prices or None, cache_calls=run.calls(), n_resamples=options.n_resamples, seed=options.seed,
        notes=run.config().get("notes"),
    )  # fmt: skip
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
