from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from tests.unit.test_types import make_trajectory
from trimroute.errors import DataError
from trimroute.trajectories import TrajectoryWriter, read_trajectories


def test_writer_appends_and_resumes_after_a_torn_line(tmp_path: Path) -> None:
    path = tmp_path / "run" / "t.jsonl"
    base = make_trajectory()
    with TrajectoryWriter(path) as w:
        for i in range(3):
            w.write(replace(base, problem=replace(base.problem, id=str(i))))
    with path.open("a") as f:
        f.write('{"problem": {"id": "3"')  # killed mid-write
    assert [t.problem.id for t in read_trajectories(path)] == ["0", "1", "2"]
    with TrajectoryWriter(path) as w:
        assert w.done == {"0", "1", "2"}
        w.write(replace(base, problem=replace(base.problem, id="3")))
    assert [t.problem.id for t in read_trajectories(path)] == ["0", "1", "2", "3"]


def test_corrupt_line_in_the_middle_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text(make_trajectory().to_json() + "\nnot json\n")
    with pytest.raises(DataError, match="t.jsonl:2"):
        list(read_trajectories(path))
    with pytest.raises(DataError, match="no trajectory file"):
        list(read_trajectories(tmp_path / "none.jsonl"))
