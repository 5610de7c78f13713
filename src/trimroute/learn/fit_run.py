"""``trim fit --run RUN``: simulator parameters from a ``trim eval`` run directory, and a held-out check.

What the fit reads from ``RUN/points.json`` (docs/simulator.md, "Fitting your own run"):

* weak-only: the ``thr:0`` point, where every weak step is scored and none is escalated (the plain
  ``weak`` point carries no scores);
* strong-only: the ``strong`` point;
* TRIM-Thr points ``thr:k`` (0 < k < 1), if any: not fitted to, only compared with (``compare``).

The labelled steps (the records ``learn.fit.observations_from_labels`` consumes) come from the ``thr:0``
trajectories: a solution graded correct has every step correct (``first_wrong`` = -1); in a solution graded
wrong the first error is the first step scored below ``error_threshold``, or the last step when none is
(ProcessBench's rule for reading an error position off a PRM).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from trimroute.errors import DataError
from trimroute.eval.rundir import RunDir
from trimroute.learn.calibrate import CurvePoint, thr_curve
from trimroute.learn.fit import params_from_runs
from trimroute.sim.presets import SimParams
from trimroute.types import Trajectory

__all__ = ["RunData", "compare", "fit_run", "labelled_steps", "measured_point", "read_run"]

WEAK_ONLY = "thr:0"


@dataclass(frozen=True)
class RunData:
    """The trajectories of a run the fit uses, by point: weak-only (scored), strong-only, ``thr:k``."""

    path: Path
    weak: list[Trajectory]
    strong: list[Trajectory]
    thr: dict[float, list[Trajectory]]
    max_steps: int
    scorer: str

    def split(self, holdout: float) -> tuple[RunData, RunData]:
        """(fit part, held-out part): each problem goes to one of them by a hash of its id."""
        held = {
            t.problem.id
            for t in self.weak
            if hashlib.blake2b(t.problem.id.encode(), digest_size=8).digest()[0] < holdout * 256
        }

        def part(keep: bool) -> RunData:
            def pick(ts: list[Trajectory]) -> list[Trajectory]:
                return [t for t in ts if (t.problem.id in held) is keep]

            thr = {k: pick(ts) for k, ts in self.thr.items()}
            return replace(self, weak=pick(self.weak), strong=pick(self.strong), thr=thr)

        return part(False), part(True)


def read_run(path: str | Path) -> RunData:
    """The points of a ``trim eval`` run directory the fit needs; a one-line ``DataError`` names what is missing."""
    run = RunDir(path)
    where = str(run.path)
    if not run.exists():
        raise DataError(f"{where!r} is not a trim eval run directory (no config.json); make one with trim eval --out")
    by_name = {p.name: p for p in run.points}
    add = f"rerun trim eval with the same options and --out {where}"
    if WEAK_ONLY not in by_name:
        raise DataError(f"{where!r} has no scored weak-only point thr:0; {add} --methods thr:0 (it resumes the run)")
    weak = _checked(run.trajectories(by_name[WEAK_ONLY]), f"{where}/{by_name[WEAK_ONLY].file}")
    if any(s.score is None or math.isnan(s.score) for t in weak for s in t.steps):
        raise DataError(f"{where}/{by_name[WEAK_ONLY].file}: weak steps without scores; {add} and a --scorer")
    if "strong" not in by_name:
        raise DataError(f"{where!r} has no strong-only point; {add} (trim eval always runs strong)")
    strong = _checked(run.trajectories(by_name["strong"]), f"{where}/{by_name['strong'].file}")
    thr = {}
    for p in run.points:
        k = _threshold(p.name) if p.method == "thr" else None
        if k is not None and 0.0 < k < 1.0:
            thr[k] = _checked(run.trajectories(p), f"{where}/{p.file}")
    setup: dict[str, Any] = run.config().get("setup", {})
    scorer = setup.get("scorer", {})
    return RunData(
        path=run.path,
        weak=weak,
        strong=strong,
        thr=dict(sorted(thr.items())),
        max_steps=int(setup.get("engine", {}).get("max_steps", 30)),
        scorer=str(scorer.get("model") or scorer.get("kind") or ""),
    )


def _threshold(name: str) -> float | None:
    try:
        return float(name.removeprefix("thr:"))
    except ValueError:
        return None  # thr:quantile=..., whose thresholds are notes of the run


def _checked(trajectories: list[Trajectory], where: str) -> list[Trajectory]:
    if not trajectories:
        raise DataError(f"{where}: no trajectories; run trim eval to the end (rerunning it resumes)")
    ungraded = sum(t.correct is None for t in trajectories)
    if ungraded:
        raise DataError(f"{where}: {ungraded} trajectories are not graded (no reference answer?); run trim grade on it")
    return trajectories


def labelled_steps(weak: Sequence[Trajectory], error_threshold: float) -> list[dict[str, Any]]:
    """One record per scored weak-only solution: ``{"problem_id", "scores", "first_wrong"}``."""
    records = []
    for t in weak:
        scores = [float(s.score) for s in t.steps if s.score is not None]
        if t.correct:
            first_wrong = -1
        else:
            first_wrong = next((i for i, c in enumerate(scores) if c < error_threshold), len(scores) - 1)
        records.append({"problem_id": t.problem.id, "scores": scores, "first_wrong": first_wrong})
    return records


def measured_point(k: float, trajectories: Sequence[Trajectory]) -> CurvePoint:
    """Accuracy and, per problem, strong tokens, strong calls and accepted weak tokens, counted."""
    n = len(trajectories)
    return CurvePoint(
        k=k,
        accuracy=sum(bool(t.correct) for t in trajectories) / n,
        strong_tokens=sum(t.strong_tokens for t in trajectories) / n,
        strong_calls=sum(s.role == "strong" for t in trajectories for s in t.steps) / n,
        weak_tokens=sum(s.generated_tokens for t in trajectories for s in t.steps if s.role == "weak") / n,
    )


def _anchored(params: SimParams, weak_only: CurvePoint, strong_only: CurvePoint) -> SimParams:
    """``params`` with both token means shifted so that weak-only weak tokens and strong-only strong tokens
    per problem are the measured ones."""
    weak, strong = thr_curve(params, [0.0, 1.0])
    return replace(
        params,
        weak=replace(
            params.weak, token_log_mean=params.weak.token_log_mean + math.log(weak_only.weak_tokens / weak.weak_tokens)
        ),
        strong=replace(
            params.strong,
            token_log_mean=params.strong.token_log_mean + math.log(strong_only.strong_tokens / strong.strong_tokens),
        ),
    )


def fit_run(data: RunData, *, name: str, error_threshold: float = 0.5) -> tuple[SimParams, list[dict[str, Any]]]:
    """A ``SimParams`` fitted to a run, and the labelled-step records it was fitted on.

    ``learn.fit.params_from_runs`` gives the next-step accuracies (maximum likelihood), per-role length
    distributions, token distributions and P(o | s) (reflected KDE on the labels); the wrong-step token
    factor is the ratio of mean tokens of the weak steps labelled wrong (S1/S2) and correct (S0), which is
    what makes a rewrite of a low-score step cost more than an average step; last, both token means are
    shifted so that weak-only and strong-only tokens per problem are the measured ones. ``thr:k`` points
    are not fitted to: ``compare`` holds the simulator against them.
    """
    records = labelled_steps(data.weak, error_threshold)
    sources = {
        "weak": f"trim fit --run {data.path}: thr:0 trajectories (weak-only, scored)",
        "strong": f"trim fit --run {data.path}: strong trajectories",
        "observation": f"reflected KDE on labelled steps of thr:0 (first step scored < {error_threshold:g} in a "
        "wrong solution is its first error)",
    }
    params = params_from_runs(
        data.weak, data.strong, records, name=name, max_steps=data.max_steps, sources=sources, scorer=data.scorer
    )
    wrong: list[int] = []
    right: list[int] = []
    for t, r in zip(data.weak, records, strict=True):
        first_wrong = len(t.steps) if r["first_wrong"] < 0 else r["first_wrong"]
        for i, step in enumerate(t.steps):
            (right if i < first_wrong else wrong).append(step.generated_tokens)
    if wrong and right:
        factor = (sum(wrong) / len(wrong)) / (sum(right) / len(right))
        params = replace(params, wrong_token_factor=factor)
        sources["wrong_token_factor"] = "mean tokens of weak steps labelled wrong / labelled correct"
    sources["tokens"] = "both token means shifted to match weak-only and strong-only tokens per problem"
    weak_only, strong_only = measured_point(0.0, data.weak), measured_point(1.0, data.strong)
    return replace(_anchored(params, weak_only, strong_only), sources=sources), records


def compare(params: SimParams, data: RunData) -> list[tuple[CurvePoint, CurvePoint]]:
    """(simulated, measured) at weak-only, each ``thr:k`` and strong-only of ``data``."""
    measured = [measured_point(0.0, data.weak), *(measured_point(k, ts) for k, ts in data.thr.items())]
    measured.append(measured_point(1.0, data.strong))
    return list(zip(thr_curve(params, [p.k for p in measured]), measured, strict=True))
