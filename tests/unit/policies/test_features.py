import math

import numpy as np
import pytest

from trimroute.errors import ArtifactError, ConfigError
from trimroute.policies.features import FEATURE_SETS, FeatureSet, feature_set
from trimroute.types import Action, Observation


def obs(scores=(0.9, 0.4, 0.7), tokens=(30, 600, 150), budget=None, spent=0) -> Observation:
    return Observation(
        problem_id="p",
        scores=scores,
        step_tokens=tokens,
        actions=(Action.CONTINUE, Action.REGENERATE)[: len(scores) - 1],
        strong_tokens_spent=spent,
        budget_left=budget,
    )


def test_official_features_follow_the_official_code():
    x = feature_set("official")(obs())
    assert x.dtype == np.float32
    # current score, min of previous, tokens/300, step/30, product of previous
    np.testing.assert_allclose(x, [0.7, 0.4, 0.5, 2 / 30, 0.9 * 0.4], rtol=1e-6)


def test_first_step_has_no_previous_steps():
    x = feature_set("paper")(obs(scores=(0.3,), tokens=(90,)))
    np.testing.assert_allclose(x, [0.3, 1.0, 0.3, 0.0], rtol=1e-6)


def test_budget_features_and_clipping():
    fs = feature_set("budget")
    with_budget = fs(obs(budget=150, spent=600))
    np.testing.assert_allclose(with_budget[-2:], [2.0, 0.5], rtol=1e-6)
    unbounded = fs(obs(tokens=(30, 600, 10_000), budget=None, spent=10**6))
    assert unbounded[2] == unbounded[-2] == unbounded[-1] == 10.0
    assert fs.space().contains(unbounded)


def test_seq_rows_hold_the_history_and_pad_with_zeros():
    fs = feature_set("seq", max_steps=5)
    x = fs(obs())
    assert x.shape == (5, 4) and fs.space().contains(x)
    np.testing.assert_allclose(x[:3], [[1, 0.9, 0.1, 0], [1, 0.4, 2.0, 1], [1, 0.7, 0.5, 0]], rtol=1e-6)
    assert not x[3:].any()


def test_seq_keeps_the_newest_positions_when_the_history_is_longer():
    fs = feature_set("seq", max_steps=2)
    x = fs(obs())
    np.testing.assert_allclose(x[:, 1], [0.4, 0.7], rtol=1e-6)


def test_missing_scores_are_a_config_error():
    with pytest.raises(ConfigError, match="scorer"):
        feature_set("official")(obs(scores=(math.nan, math.nan, math.nan)))


def test_unknown_feature_set_lists_the_valid_ones():
    with pytest.raises(ConfigError, match="official"):
        feature_set("fancy")


@pytest.mark.parametrize("name", list(FEATURE_SETS))
def test_round_trip(name):
    fs = feature_set(name, max_steps=12)
    assert FeatureSet.from_dict(fs.to_dict()) == fs


@pytest.mark.parametrize(
    "change, message",
    [
        ({"name": "older"}, "unknown here"),
        ({"columns": ["score", "min_prev"]}, "columns"),
        ({"version": 0}, "version"),
        ({"token_scale": 512.0}, "token_scale"),
    ],
)
def test_recorded_features_that_do_not_match_are_rejected(change, message):
    d = {**feature_set("official").to_dict(), **change}
    with pytest.raises(ArtifactError, match=message):
        FeatureSet.from_dict(d)
