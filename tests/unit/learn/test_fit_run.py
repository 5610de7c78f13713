"""``learn.fit_run``: reading a run directory for the fit, and its one-line errors (simulated runs)."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import pytest

from trimroute.errors import DataError
from trimroute.eval.rundir import RunDir
from trimroute.learn.fit_run import compare, fit_run, read_run
from trimroute.policies import parse_policy
from trimroute.runner import simulated_engine
from trimroute.sim.backend import is_sim_correct, simulated_problems
from trimroute.trajectories import TrajectoryWriter


def write_run(path: Path, points: dict[str, str], n: int = 200, graded: bool = True) -> Path:
    """A run directory like trim eval's: point name -> policy spec, run in the fitted simulator."""
    problems = simulated_problems(n)
    run = RunDir(path)
    setup = {"scorer": {"kind": "sim", "model": ""}, "engine": {"max_steps": 30}}
    run.start({"dataset": "sim", "problem_ids": [p.id for p in problems], "setup": setup})

    async def record(name: str, spec: str) -> None:
        entry = run.add_point(name, name.split(":")[0])
        with TrajectoryWriter(run.file(entry)) as w:
            async for t in simulated_engine("qwen1.5b-7b", seed=2).run(problems, parse_policy(spec)):
                w.write(replace(t, correct=is_sim_correct(t) if graded else None))

    for name, spec in points.items():
        asyncio.run(record(name, spec))
    return path


def test_fit_run_costs_rewrites_and_matches_the_end_points(tmp_path: Path) -> None:
    data = read_run(write_run(tmp_path, {"strong": "strong", "thr:0": "thr:0", "thr:0.5": "thr:0.5"}))
    assert list(data.thr) == [0.5] and data.max_steps == 30 and data.scorer == "sim"
    params, records = fit_run(data, name="sim-fit")
    assert len(records) == 200
    assert all(r["first_wrong"] == -1 for r, t in zip(records, data.weak, strict=True) if t.correct)
    # in the fitted world a wrong step is 2.71x longer: the labelled steps must show it
    assert params.wrong_token_factor > 1.5
    (weak_sim, weak_got), _, (strong_sim, strong_got) = compare(params, data)
    assert weak_sim.weak_tokens == pytest.approx(weak_got.weak_tokens)
    assert strong_sim.strong_tokens == pytest.approx(strong_got.strong_tokens)
    fit_part, held = data.split(0.5)
    assert {t.problem.id for t in fit_part.weak} | {t.problem.id for t in held.weak} == {
        t.problem.id for t in data.weak
    }
    assert 60 < len(held.weak) < 140 and {t.problem.id for t in held.thr[0.5]} == {t.problem.id for t in held.weak}


def test_read_run_names_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not a trim eval run directory"):
        read_run(tmp_path / "none")
    with pytest.raises(DataError, match=r"no scored weak-only point thr:0; rerun trim eval .* --methods thr:0"):
        read_run(write_run(tmp_path / "a", {"weak": "weak", "strong": "strong"}, n=5))
    with pytest.raises(DataError, match="weak steps without scores"):
        read_run(write_run(tmp_path / "b", {"thr:0": "weak", "strong": "strong"}, n=5))
    with pytest.raises(DataError, match="no strong-only point"):
        read_run(write_run(tmp_path / "c", {"thr:0": "thr:0"}, n=5))
    with pytest.raises(DataError, match="5 trajectories are not graded.*trim grade"):
        read_run(write_run(tmp_path / "d", {"thr:0": "thr:0", "strong": "strong"}, n=5, graded=False))
