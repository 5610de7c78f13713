from __future__ import annotations

import pytest

from trimroute.errors import ConfigError
from trimroute.policies import POLICIES, parse_policy
from trimroute.testing import check_policy
from trimroute.types import Action, Observation


def obs(score: float, problem: str = "p", index: int = 0, final: bool = False) -> Observation:
    scores = (0.9,) * index + (score,)
    return Observation(problem, scores, (10,) * (index + 1), (Action.CONTINUE,) * index, 0, None, final)


@pytest.mark.parametrize(
    "spec", ["weak", "strong", "random:0.3", "thr:0.7", "thr:0.7:keep-final", "random:0.3:keep-final"]
)
def test_builtin_policies_conform_and_round_trip_their_name(spec: str) -> None:
    policy = parse_policy(spec)
    check_policy(policy)
    assert parse_policy(policy.name).name == policy.name


def test_threshold_decision() -> None:
    thr = parse_policy("thr:0.5")
    assert thr.decide(obs(0.49)) is Action.REGENERATE
    assert thr.decide(obs(0.5)) is Action.CONTINUE
    assert thr.decide(obs(0.49, final=True)) is Action.REGENERATE


def test_keep_final_never_rewrites_the_answer_step() -> None:
    thr = parse_policy("thr:0.5:keep-final")
    assert thr.decide(obs(0.49)) is Action.REGENERATE
    assert thr.decide(obs(0.01, index=3, final=True)) is Action.CONTINUE
    always = parse_policy("random:1:keep-final")
    assert always.decide(obs(0.5)) is Action.REGENERATE
    assert always.decide(obs(0.5, index=3, final=True)) is Action.CONTINUE


def test_random_policy_is_reproducible_and_has_the_right_rate() -> None:
    pol = parse_policy("random:0.25")
    decisions = [pol.decide(obs(0.5, f"p{i}", i % 7)) for i in range(4000)]
    assert decisions == [pol.decide(obs(0.5, f"p{i}", i % 7)) for i in range(4000)]
    rate = decisions.count(Action.REGENERATE) / len(decisions)
    assert 0.22 < rate < 0.28


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("thr:1.5", "threshold must be in \\[0, 1\\]"),
        ("thr", "needs a value"),
        ("thr:abc", "takes a number"),
        ("thr:0.5:keep", "optionally then :keep-final"),
        ("random:-1", "must be in \\[0, 1\\]"),
        ("weak:1", "takes no value"),
        ("nope", "unknown policy 'nope'; valid: .*thr"),
    ],
)
def test_bad_specs(spec: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_policy(spec)


def test_registry_lists_names() -> None:
    assert {"weak", "strong", "random", "thr"} <= set(POLICIES)
