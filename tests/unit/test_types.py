from __future__ import annotations

import pytest

from trimroute.errors import DataError
from trimroute.types import (
    Action,
    FinishReason,
    Observation,
    Problem,
    RoleUsage,
    Step,
    StopReason,
    Trajectory,
    Usage,
)


def make_trajectory() -> Trajectory:
    usage = (
        Usage().add("weak", calls=3, generated_tokens=30, discarded_tokens=5).add("strong", calls=1, generated_tokens=9)
    )
    return Trajectory(
        problem=Problem("7", "What is 2+2?", "4", {"source": "unit"}),
        steps=(
            Step("2+2", "weak", 3, 40, 0.93, Action.CONTINUE, token_logprobs=(-0.1, -0.2, -0.05)),
            Step("= \\boxed{4}", "strong", 9, 45, 0.2, Action.REGENERATE, FinishReason.STOP, 0.5),
        ),
        discarded=(Step("= 5", "weak", 5, 45, 0.2, Action.REGENERATE),),
        stop_reason=StopReason.ANSWER,
        usage=usage,
        policy="thr:0.5",
        final_answer="4",
        correct=True,
        wall_time_s=1.25,
    )


def test_trajectory_json_round_trip_is_lossless() -> None:
    t = make_trajectory()
    assert Trajectory.from_json(t.to_json()) == t
    assert t.strong_tokens == 9 and t.escalations == 1 and t.solution == "2+2\n\n= \\boxed{4}"


def test_bad_records_raise_data_errors() -> None:
    with pytest.raises(DataError, match="not JSON"):
        Trajectory.from_json("{oops")
    with pytest.raises(DataError, match="not a trajectory"):
        Trajectory.from_json('{"steps": []}')


def test_usage_arithmetic() -> None:
    u = Usage().add("scorer", calls=2, prompt_tokens=10) + Usage().add("scorer", calls=1)
    assert u.scorer == RoleUsage(calls=3, prompt_tokens=10)
    assert Usage.from_dict(u.to_dict()) == u


def test_observation_features() -> None:
    obs = Observation("p", (0.5, 0.8, 0.3), (10, 20, 30), (Action.CONTINUE, Action.CONTINUE), 0, None)
    assert obs.step_index == 2 and obs.score == 0.3 and obs.tokens == 30
    assert obs.min_prev_score == 0.5 and obs.prod_prev_score == pytest.approx(0.4)
    first = Observation("p", (0.7,), (5,), (), 0, None)
    assert first.min_prev_score == 1.0 and first.prod_prev_score == 1.0
