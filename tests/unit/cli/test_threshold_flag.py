"""``--policy thr --threshold K`` writes ``thr:K``, keeping a modifier and refusing other policies."""

from __future__ import annotations

import pytest

from trimroute.cli.run import resolve_config
from trimroute.errors import ConfigError


@pytest.mark.parametrize(
    ("policy", "expected"), [("thr", "thr:0.7"), ("thr:0.2", "thr:0.7"), ("thr:0.2:keep-final", "thr:0.7:keep-final")]
)
def test_threshold_flag_sets_k(policy: str, expected: str) -> None:
    assert resolve_config(None, [f"policy={policy}"], 0.7).policy == expected


def test_threshold_flag_needs_the_threshold_policy() -> None:
    with pytest.raises(ConfigError, match="--threshold applies to the threshold policy"):
        resolve_config(None, ["policy=random:0.2"], 0.7)
