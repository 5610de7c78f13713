"""``trim demo``: TRIM routing real steps between two real models on a plain CPU, offline.

The weak and strong models come from the catalog (``trimroute.models``) and run in-process with
llama.cpp; a PRM-free scorer scores the weak steps. On N GSM8K problems the demo runs weak-only,
strong-only, TRIM-Thr at a few thresholds and, for each threshold, random step routing at the same
strong-token budget (DESIGN.md §5), then prints the comparison table of DESIGN.md §6 and writes a plot.

Thresholds default to quantiles of the scorer's scores of the weak-only steps, so they escalate
roughly the intended share of steps whatever the scorer's scale. Every model and scorer call goes through
the call cache in the output folder: a rerun with the same settings is instant.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from trimroute.config import BackendConfig, ScorerConfig
from trimroute.data.datasets import load_dataset
from trimroute.data.grading import grade_trajectory
from trimroute.display import print_step
from trimroute.engine import Engine, EngineConfig
from trimroute.errors import ConfigError
from trimroute.eval.metrics import MethodSummary, pgr, summarize
from trimroute.eval.plots import plot_curves
from trimroute.generators import build_generator
from trimroute.generators.cache import cached_engine
from trimroute.models import pull_model
from trimroute.policies import RandomPolicy, parse_policy
from trimroute.policies.base import Policy
from trimroute.scorers import build_scorer
from trimroute.store import CallStore
from trimroute.trajectories import TrajectoryWriter
from trimroute.types import Problem, Step, Trajectory

__all__ = ["DemoConfig", "DemoResult", "run_demo"]

DEFAULT_DATASET = "gsm8k-offline"
DEFAULT_QUANTILES = (0.1, 0.25, 0.4)


@dataclass(frozen=True)
class DemoConfig:
    """What ``trim demo`` runs. Models are catalog names or .gguf paths."""

    weak: str = "qwen2.5-coder-0.5b-instruct"
    strong: str = "qwen2.5-coder-1.5b-instruct"
    scorer: str = "likelihood"
    dataset: str = DEFAULT_DATASET
    n: int = 20
    thresholds: tuple[float, ...] | None = None  # None: quantiles of the weak-only step scores
    quantiles: tuple[float, ...] = DEFAULT_QUANTILES
    random_baseline: bool = True
    out: Path = Path("trim-demo")
    seed: int = 0
    n_threads: int | None = None
    n_ctx: int = 2048
    max_steps: int = 30
    max_step_tokens: int = 256
    max_solution_tokens: int = 1024
    temperature: float = 0.7
    top_p: float = 0.8
    top_k: int = 20

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ConfigError(f"--n must be >= 1 problem, got {self.n}")
        if self.thresholds is not None and not all(0.0 <= k <= 1.0 for k in self.thresholds):
            raise ConfigError(f"thresholds must lie in [0, 1], got {list(self.thresholds)}")
        if not all(0.0 < q < 1.0 for q in self.quantiles):
            raise ConfigError(f"quantiles must lie in (0, 1), got {list(self.quantiles)}")


@dataclass(frozen=True)
class DemoRow:
    """One line of the comparison table."""

    method: str
    summary: MethodSummary
    pgr: float | None
    elapsed_s: float
    matches: str | None = None  # for a random row: the TRIM-Thr row whose strong-token budget it matches


@dataclass(frozen=True)
class DemoResult:
    rows: tuple[DemoRow, ...]
    plot: list[Path]
    out: Path
    cache_hits: int
    cache_misses: int
    thresholds: tuple[float, ...] = field(default=())


def _backend(name: str, path: Path, cfg: DemoConfig) -> BackendConfig:
    options: dict[str, Any] = {"model_path": str(path), "n_ctx": cfg.n_ctx}
    if cfg.n_threads:
        options["n_threads"] = cfg.n_threads
    return BackendConfig(
        kind="llamacpp",
        model=name,
        chat_template="chatml",
        temperature=cfg.temperature,
        top_p=cfg.top_p,
        top_k=cfg.top_k,
        options=options,
    )


def _scorer_config(cfg: DemoConfig, strong_path: Path) -> ScorerConfig:
    kind, _, arg = cfg.scorer.partition(":")
    if kind == "likelihood":
        options: dict[str, Any] = {"n_ctx": cfg.n_ctx}
        if arg:
            options["statistic"] = arg
        if cfg.n_threads:
            options["n_threads"] = cfg.n_threads
        return ScorerConfig(kind=kind, model=str(strong_path), options=options)
    if kind == "confidence":
        return ScorerConfig(kind=kind, options={"statistic": arg} if arg else {})
    if kind == "composite":
        return ScorerConfig(kind=kind, model=str(strong_path), options={"artifact": arg})
    if arg:
        raise ConfigError(f"scorer {kind!r} takes no value, got {cfg.scorer!r}")
    return ScorerConfig(kind=kind)


def _params(backend: BackendConfig) -> dict[str, Any]:
    """What decides a generator's output, for the cache key (not where the file happens to live)."""
    d = asdict(backend)
    d["options"] = {k: v for k, v in backend.options.items() if k not in ("model_path", "n_threads")}
    return d


class _Live:
    """Streams one problem's steps, coloured by the model that wrote them, with the scores."""

    def __init__(self, console: Console, problem: Problem) -> None:
        self.console = console
        self.problem = problem
        self.started = False

    def __call__(self, problem: Problem, step: Step) -> None:
        if problem.id != self.problem.id:
            return
        if not self.started:
            self.started = True
            self.console.rule(f"TRIM live on problem {problem.id}", style="dim")
            self.console.print(Text(problem.text))
        print_step(self.console, step)


def quantile_thresholds(scores: Sequence[float], quantiles: Sequence[float]) -> tuple[float, ...]:
    """Thresholds that would escalate about ``q`` of the weak steps, rounded, deduplicated, ascending."""
    if not scores:
        raise ConfigError("no weak step was scored, so thresholds cannot be set; pass --thresholds")
    values = np.quantile(np.asarray(scores), list(quantiles))
    # significant digits, not decimals: min-token probabilities can all lie below 0.001
    return tuple(sorted({float(f"{v:.3g}") for v in values}))


async def _run_method(
    engine: Engine,
    problems: Sequence[Problem],
    policy: Policy,
    out: Path,
    progress: Progress,
    on_step: Callable[[Problem, Step], None] | None = None,
) -> tuple[list[Trajectory], float]:
    """Run (or resume) one method; trajectories are graded and appended to ``out/<method>.jsonl``."""
    task = progress.add_task(policy.name, total=len(problems))
    t0 = time.perf_counter()
    path = out / _trajectory_file(policy.name)
    by_id: dict[str, Trajectory] = {}
    # a previous run's lines are re-derived through the call cache rather than trusted: settings may differ
    path.unlink(missing_ok=True)
    with TrajectoryWriter(path) as writer:
        async for trajectory in engine.run(problems, policy, on_step):
            graded = grade_trajectory(trajectory)
            writer.write(graded)
            by_id[graded.problem.id] = graded
            progress.advance(task)
    return [by_id[p.id] for p in problems], time.perf_counter() - t0


def _trajectory_file(method: str) -> str:
    return f"trajectories/{method.replace(':', '_')}.jsonl"


async def _score_weak_steps(engine: Engine, trajectories: Sequence[Trajectory]) -> list[float]:
    """The scorer's score of every weak-only step, as TRIM-Thr would see it (history scored each time)."""
    assert engine.scorer is not None
    scores = []
    for t in trajectories:
        for i in range(len(t.steps)):
            result = await engine.scorer.score(t.problem, t.steps[: i + 1])
            scores.append(result.values[-1])
    return scores


async def _demo(cfg: DemoConfig, console: Console) -> DemoResult:
    weak_path, strong_path = pull_model(cfg.weak), pull_model(cfg.strong)
    problems = load_dataset(cfg.dataset, limit=cfg.n)
    weak_cfg, strong_cfg = _backend(cfg.weak, weak_path, cfg), _backend(cfg.strong, strong_path, cfg)
    scorer_cfg = _scorer_config(cfg, strong_path)
    console.print(
        f"weak [cyan]{cfg.weak}[/], strong [magenta]{cfg.strong}[/], scorer [bold]{cfg.scorer}[/], "
        f"{len(problems)} problems from {cfg.dataset}; loading models…"
    )
    engine_cfg = EngineConfig(
        max_steps=cfg.max_steps,
        max_step_tokens=cfg.max_step_tokens,
        max_solution_tokens=cfg.max_solution_tokens,
        seed=cfg.seed,
        # one problem at a time: in-process llama.cpp keeps one KV cache per model, and the next step of
        # the same problem reuses it; on 2 cores there is nothing to gain from interleaving problems
        concurrency=1,
        weak_logprobs=scorer_cfg.kind in ("confidence", "composite"),
    )
    if engine_cfg.weak_logprobs:
        weak_cfg = replace(weak_cfg, options={**weak_cfg.options, "logits_all": True})
    weak = build_generator(weak_cfg)
    strong = weak if weak_path == strong_path else build_generator(strong_cfg)
    store = CallStore(cfg.out / "cache.sqlite")
    base = Engine(weak, strong, build_scorer(scorer_cfg), engine_cfg)
    engine = cached_engine(
        base,
        store,
        {"weak": _params(weak_cfg), "strong": _params(strong_cfg), "scorer": {"kind": cfg.scorer, "model": cfg.strong}},
    )
    rows: list[DemoRow] = []
    runs: dict[str, tuple[list[Trajectory], float]] = {}
    matches: dict[str, str] = {}  # random method -> the threshold whose budget it matches (the first one)
    try:
        live = _Live(console, problems[0])
        columns = (TextColumn("{task.description:>14}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=console, transient=False) as progress:
            runs["weak"] = await _run_method(engine, problems, parse_policy("weak"), cfg.out, progress)
            thresholds = cfg.thresholds or quantile_thresholds(
                await _score_weak_steps(engine, runs["weak"][0]), cfg.quantiles
            )
            for k in thresholds:  # the first TRIM run streams the first problem live
                policy = parse_policy(f"thr:{k:g}")
                on_step = live if k == thresholds[0] else None
                runs[policy.name] = await _run_method(engine, problems, policy, cfg.out, progress, on_step)
            runs["strong"] = await _run_method(engine, problems, parse_policy("strong"), cfg.out, progress)
            c_strong = _mean_strong(runs["strong"][0])
            for k in thresholds if cfg.random_baseline and c_strong > 0 else ():
                p = min(1.0, _mean_strong(runs[f"thr:{k:g}"][0]) / c_strong)
                rnd = RandomPolicy(round(p, 3), seed=cfg.seed)
                matches.setdefault(rnd.name, f"thr:{k:g}")
                if rnd.name not in runs:
                    runs[rnd.name] = await _run_method(engine, problems, rnd, cfg.out, progress)
    finally:
        await engine.aclose()
        hits = sum(s.hits for s in store.stats.values())
        misses = sum(s.misses for s in store.stats.values())
        store.close()
    r_weak = _accuracy(runs["weak"][0])
    r_strong = _accuracy(runs["strong"][0])
    for name, (trajectories, elapsed) in runs.items():
        summary = summarize(name, trajectories, strong_only_tokens=c_strong)
        gain = pgr(summary.accuracy, r_weak, r_strong) if summary.accuracy is not None else None
        rows.append(DemoRow(name, summary, gain, elapsed, matches.get(name)))
    # both families run from weak-only (route nothing) to strong-only (route every step)
    ends = [(0.0, r_weak), (c_strong, r_strong)]
    curves = {
        label: sorted(
            ends + [(r.summary.mean_strong_tokens, r.summary.accuracy or 0.0) for r in rows if r.method.startswith(p)]
        )
        for label, p in (("TRIM-Thr", "thr:"), ("random (matched)", "random:"))
    }
    plot = plot_curves(
        {k: v for k, v in curves.items() if v},
        cfg.out / "demo",
        r_weak=r_weak,
        r_strong=r_strong,
        c_strong=c_strong or None,
        title=f"{cfg.weak} → {cfg.strong}\n{len(problems)} problems, scorer {cfg.scorer}",
    )
    result = DemoResult(tuple(rows), plot, cfg.out, hits, misses, tuple(thresholds))
    _write_summary(result, cfg)
    return result


def _write_summary(result: DemoResult, cfg: DemoConfig) -> None:
    """``demo.json``: the settings and the table, each row naming its trajectory file (for later analysis:
    files of earlier runs with other thresholds may share the folder)."""
    rows = [
        {
            **asdict(r.summary),
            "trajectories": _trajectory_file(r.method),
            "pgr": r.pgr,
            "wall_s": r.elapsed_s,
            "matches": r.matches,
        }
        for r in result.rows
    ]
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(cfg).items()}
    summary = {"settings": settings, "thresholds": list(result.thresholds), "rows": rows}
    (cfg.out / "demo.json").write_text(json.dumps(summary, indent=2) + "\n")


def _mean_strong(trajectories: Sequence[Trajectory]) -> float:
    return sum(t.strong_tokens for t in trajectories) / len(trajectories)


def _accuracy(trajectories: Sequence[Trajectory]) -> float:
    return sum(bool(t.correct) for t in trajectories) / len(trajectories)


def result_table(result: DemoResult) -> Table:
    """The comparison table: accuracy, strong tokens per problem, strong-token share, PGR, wall time."""
    table = Table(title="weak-only vs strong-only vs TRIM-Thr vs random routing at the same budget")
    for col in ("method", "accuracy", "strong tok/problem", "strong share", "PGR", "escalations/problem", "wall"):
        table.add_column(col, justify="left" if col == "method" else "right")
    for row in result.rows:
        s = row.summary
        table.add_row(
            row.method,
            f"{s.accuracy:.1%}" if s.accuracy is not None else "-",
            f"{s.mean_strong_tokens:.1f}",
            f"{s.strong_share:.1%}" if s.strong_share is not None else "-",
            f"{row.pgr:.1%}" if row.pgr is not None else "-",
            f"{s.escalations_per_problem:.2f}",
            f"{row.elapsed_s:.0f} s",
        )
    return table


def run_demo(cfg: DemoConfig, console: Console | None = None) -> DemoResult:
    """Run the demo, printing live steps, progress and the final table to ``console``."""
    console = console or Console()
    result = asyncio.run(_demo(cfg, console))
    console.print(result_table(result))
    console.print(
        f"thresholds {', '.join(f'{k:g}' for k in result.thresholds)}; plot: "
        f"{', '.join(str(p) for p in result.plot)}; trajectories and call cache in {result.out} "
        f"({result.cache_hits} cached calls reused, {result.cache_misses} made)"
    )
    return result
