from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from trimroute.data.grading import grade_answer, grade_trajectory
from trimroute.errors import ConfigError
from trimroute.types import Problem, Step, StopReason, Trajectory, Usage


@pytest.mark.parametrize(
    ("predicted", "gold"),
    [
        ("1/2", "0.5"),
        ("0.5", "1/2"),
        (r"\frac{1}{2}", "0.5"),
        (r"\dfrac{1}{2}", r"\frac12"),
        ("1,000", "1000"),
        ("18", "18"),
        (r"\left( 3, \frac{\pi}{2} \right)", r"(3, \pi/2)"),
        (r"2\sqrt{2}", r"\sqrt{8}"),
        ("So the total is $\\boxed{42}$ dollars.", "42"),  # a whole solution: its last \boxed{}
    ],
)
def test_equivalent_answers_are_correct(predicted: str, gold: str) -> None:
    assert grade_answer(predicted, gold) is True


@pytest.mark.parametrize(
    ("predicted", "gold"),
    [("3", "4"), ("0.51", "1/2"), (r"\frac{1}{3}", "0.5"), ("", "1"), ("   ", "1"), (r"\boxed{7} then \boxed{8}", "7")],
)
def test_wrong_answers_are_wrong(predicted: str, gold: str) -> None:
    assert grade_answer(predicted, gold) is False


def test_no_gold_means_ungraded_and_no_prediction_means_wrong() -> None:
    assert grade_answer("5", None) is None
    assert grade_answer(None, "5") is False


def test_bad_timeout_is_rejected() -> None:
    with pytest.raises(ConfigError, match="timeout_s must be positive"):
        grade_answer("1", "2", timeout_s=0)


def test_pathological_input_times_out_and_the_grader_recovers() -> None:
    assert grade_answer("1/2", "0.5") is True  # warm the grading process up first
    start = time.monotonic()
    # sympy tries to evaluate this power tower exactly and never finishes.
    assert grade_answer("9^{9^{9^{9^{9}}}}", "1", timeout_s=0.5) is False
    assert time.monotonic() - start < 30  # killed, not waited for
    assert grade_answer(r"\frac{3}{4}", "0.75") is True  # a fresh process took over


def test_grading_from_many_threads_gives_the_same_results() -> None:
    cases = [("1/2", "0.5", True), ("3", "4", False), (r"\frac{2}{4}", "1/2", True), ("7.0", "7", True)] * 5
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda c: grade_answer(c[0], c[1]), cases))
    assert results == [expected for _, _, expected in cases]


def _trajectory(answer: str | None, final_answer: str | None, steps: tuple[str, ...]) -> Trajectory:
    return Trajectory(
        problem=Problem(id="p", text="q", answer=answer),
        steps=tuple(Step(text=s, role="weak", generated_tokens=3) for s in steps),
        discarded=(),
        stop_reason=StopReason.ANSWER,
        usage=Usage(),
        policy="weak",
        final_answer=final_answer,
    )


def test_grade_trajectory_returns_a_graded_copy() -> None:
    trajectory = _trajectory("0.5", "1/2", ("Half of it.", r"So \boxed{1/2}."))
    graded = grade_trajectory(trajectory)
    assert graded.correct is True and trajectory.correct is None
    assert graded.steps == trajectory.steps and graded.final_answer == "1/2"


def test_grade_trajectory_falls_back_to_the_solution_and_handles_no_gold() -> None:
    assert grade_trajectory(_trajectory("6", None, ("2 * 3 = 6", r"\boxed{6}"))).correct is True
    assert grade_trajectory(_trajectory("6", None, ("I give up",))).correct is False
    assert grade_trajectory(_trajectory(None, "6", (r"\boxed{6}",))).correct is None
