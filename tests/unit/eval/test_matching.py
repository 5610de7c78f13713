"""Budget matching for random step routing: bisection on p with pilot runs."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable

import pytest

from trimroute.errors import ConfigError
from trimroute.eval.matching import match_budget, same_budget


def _counted(budget: Callable[[float], float]) -> tuple[Callable[[float], Awaitable[float]], list[float]]:
    calls: list[float] = []

    async def evaluate(p: float) -> float:
        calls.append(p)
        return budget(p)

    return evaluate, calls


def test_same_budget_is_within_two_percent() -> None:
    assert same_budget(101.9, 100) and same_budget(98.1, 100)
    assert not same_budget(102.1, 100) and not same_budget(30.2, 33.7)  # the README's old matched row


async def test_a_nonlinear_budget_is_matched_where_p_equals_the_share_misses() -> None:
    # Strong tokens grow like p^0.6: p = target / 400 (the old rule) spends 2.5x the target.
    evaluate, calls = _counted(lambda p: 400 * p**0.6)
    match = await match_budget(evaluate, 100, first=100 / 400)
    assert calls[0] == 0.25 and not same_budget(400 * 0.25**0.6, 100)
    assert match.matched and abs(match.budget - 100) <= 2
    assert match.p == pytest.approx(0.25 ** (1 / 0.6), abs=0.01)
    assert len(match.pilots) == len(calls) <= 10
    assert "same budget" in match.describe() and "NOT" not in match.describe()


async def test_a_noisy_budget_is_matched() -> None:
    evaluate, _ = _counted(lambda p: 500 * p + 15 * math.sin(40 * p))
    match = await match_budget(evaluate, 180)
    assert match.matched and same_budget(match.budget, 180)


async def test_an_unreachable_budget_says_so() -> None:
    evaluate, calls = _counted(lambda p: 50 * p)  # even p = 1 spends half the target
    match = await match_budget(evaluate, 100, first=0.5)
    assert not match.matched
    assert (match.p, match.budget) == (1.0, 50.0) and calls[-1] == 1.0
    assert match.relative_error == pytest.approx(-0.5)
    assert "NOT the same budget" in match.describe()


async def test_a_budget_between_two_steps_stops_with_the_closest() -> None:
    evaluate, calls = _counted(lambda p: 40.0 * math.floor(5 * p))  # 0, 40, 80, ...: 100 is never hit
    match = await match_budget(evaluate, 100, max_pilots=30)
    assert not match.matched and match.budget in (80.0, 120.0)
    assert len(calls) < 30  # the bracket runs out before the pilots do
    assert len(set(calls)) == len(calls)  # no pilot is run twice


async def test_max_pilots_bounds_the_search() -> None:
    evaluate, calls = _counted(lambda p: 400 * p**3)
    match = await match_budget(evaluate, 100, first=0.01, max_pilots=2)
    assert len(calls) == 2 and len(match.pilots) == 2


async def test_a_zero_target_is_p_zero() -> None:
    evaluate, calls = _counted(lambda p: 400 * p)
    match = await match_budget(evaluate, 0)
    assert (match.p, match.budget, calls) == (0.0, 0.0, [0.0])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"target": -1}, "target >= 0"),
        ({"target": 1, "max_pilots": 0}, "max_pilots"),
        ({"target": 1, "first": 2}, "first guess"),
    ],
)
async def test_bad_arguments_say_what_is_wrong(kwargs: dict, message: str) -> None:
    evaluate, _ = _counted(lambda p: p)
    with pytest.raises(ConfigError, match=message):
        await match_budget(evaluate, **kwargs)
