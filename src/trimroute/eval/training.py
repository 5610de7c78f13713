"""The training split of the query-level baselines: another ``trim eval`` run (``trim eval --train RUN``).

The paper trains its query routers on one benchmark and evaluates them on another (Table 2: trained on
AIME, tested on OlympiadBench and Minerva). A training run is any ``trim eval`` run directory with
finished weak-only and strong-only points, made with the same models, scorer and engine rules as the
evaluation (its labels are those models' outcomes) on problems the evaluation does not contain.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trimroute.errors import ConfigError, DataError
from trimroute.eval.rundir import RunDir
from trimroute.types import Trajectory

__all__ = ["TrainingRun", "load_training"]


@dataclass(frozen=True)
class TrainingRun:
    """The weak-only and strong-only trajectories of a training run, in the same problem order."""

    path: Path
    weak: list[Trajectory]
    strong: list[Trajectory]
    setup: Any  # the run's model/scorer/engine identity (config.json "setup")

    def check(self, problem_ids: Sequence[str], setup: Mapping[str, Any]) -> None:
        """Refuse a training run that shares problems with the evaluation or was made with other models."""
        shared = sorted(set(problem_ids) & {t.problem.id for t in self.weak})
        if shared:
            raise ConfigError(
                f"the training run {str(self.path)!r} shares {len(shared)} problem(s) with the evaluation "
                f"(e.g. {shared[0]!r}): train on another split or dataset"
            )
        if self.setup != setup.get("setup"):
            raise ConfigError(
                f"the training run {str(self.path)!r} was made with other models, scorer or engine settings: "
                "run it with the same configuration as the evaluation"
            )

    def describe(self) -> str:
        return f"trained on {len(self.weak)} problems of {self.path}"


def load_training(path: str | Path) -> TrainingRun:
    """The finished weak-only and strong-only points of the run directory at ``path``."""
    run = RunDir(path)
    if not run.exists():
        raise DataError(f"{str(path)!r} is not a trim eval run directory (no config.json): give a training run")
    ids = run.config().get("problem_ids", [])
    refs = {}
    for role in ("weak", "strong"):
        entry = next((p for p in run.points if p.name == role and p.method == role), None)
        by_id = {t.problem.id: t for t in run.trajectories(entry)} if entry is not None else {}
        if not ids or set(by_id) != set(ids):
            raise DataError(
                f"the training run {str(path)!r} has {len(by_id)} of {len(ids)} {role}-only results: finish it first "
                "(rerun its trim eval with the same --out)"
            )
        refs[role] = [by_id[i] for i in ids]
    return TrainingRun(Path(path), refs["weak"], refs["strong"], run.config().get("setup"))
