"""Thresholds at quantiles of the weak steps' scores (thr:quantile=..., the demo's default)."""

from __future__ import annotations

import pytest

from trimroute.errors import ConfigError
from trimroute.eval.sweep import quantile_thresholds


def test_thresholds_are_quantiles_rounded_and_deduplicated() -> None:
    scores = [i / 100 for i in range(101)]
    assert quantile_thresholds(scores, [0.25, 0.5, 0.5]) == (0.25, 0.5)


def test_tiny_scores_keep_distinct_thresholds() -> None:
    # min-token probabilities: everything below 0.001, so rounding to decimals would give 0 (escalate nothing)
    scores = [1e-5 * (i + 1) for i in range(100)]
    low, high = quantile_thresholds(scores, [0.15, 0.35])
    assert 0 < low < high < 1e-3
    assert sum(s < low for s in scores) == pytest.approx(15, abs=1)


def test_no_scores_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="--thresholds"):
        quantile_thresholds([], [0.5])
