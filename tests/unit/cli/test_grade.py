from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from trimroute.cli import app
from trimroute.trajectories import TrajectoryWriter, read_trajectories
from trimroute.types import Problem, Step, StopReason, Trajectory, Usage


def _trajectory(pid: str, gold: str | None, final: str, stored: bool | None) -> Trajectory:
    return Trajectory(
        problem=Problem(pid, "q", gold),
        steps=(Step(f"\\boxed{{{final}}}", "weak", 5),),
        discarded=(),
        stop_reason=StopReason.ANSWER,
        usage=Usage(),
        policy="weak",
        final_answer=final,
        correct=stored,
    )


def test_grade_rewrites_grades_in_place(tmp_path: Path) -> None:
    run = tmp_path / "run"
    with TrajectoryWriter(run / "trajectories" / "weak.jsonl") as w:
        w.write(_trajectory("a", "0.5", "1/2", stored=False))  # a stale wrong grade
        w.write(_trajectory("b", "3", "4", stored=None))
        w.write(_trajectory("c", None, "7", stored=None))
    result = CliRunner().invoke(app, ["grade", str(run)])
    assert result.exit_code == 0, result.output
    assert "50.0%" in result.output  # 1 of the 2 graded problems
    graded = {t.problem.id: t.correct for t in read_trajectories(run / "trajectories" / "weak.jsonl")}
    assert graded == {"a": True, "b": False, "c": None}


def test_grade_missing_path_is_a_one_line_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["grade", str(tmp_path / "nope")])
    assert result.exit_code == 1
    assert "does not exist; pass a run directory or a trajectory JSONL file" in result.output
    empty = tmp_path / "empty"
    empty.mkdir()
    result = CliRunner().invoke(app, ["grade", str(empty)])
    assert result.exit_code == 1 and "no trajectory files" in result.output
