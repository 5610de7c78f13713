"""Model names -> policies, in the vocabulary of ``POLICIES``."""

from __future__ import annotations

import pytest

from trimroute.errors import ConfigError
from trimroute.serve.errors import ApiError
from trimroute.serve.routers import Routers


@pytest.fixture
def routers() -> Routers:
    return Routers("thr:0.5", {"trim-pomdp-lam0.15": "thr:0.3"})


@pytest.mark.parametrize(
    ("model", "spec"),
    [
        ("weak", "weak"),
        ("strong", "strong"),
        ("trim", "thr:0.5"),
        ("trim-thr-0.7", "thr:0.7"),
        ("trim-random-0.2", "random:0.2"),
        ("trim-weak", "weak"),
        ("trim-pomdp-lam0.15", "thr:0.3"),
    ],
)
def test_model_names(routers: Routers, model: str, spec: str) -> None:
    assert routers.spec(model) == spec
    assert routers.resolve(model).name == spec


def test_unknown_model_is_404_listing_the_served_names(routers: Routers) -> None:
    with pytest.raises(ApiError) as e:
        routers.spec("trim-nonsense-1")
    assert e.value.status == 404 and e.value.code == "model_not_found"
    assert "weak, strong, trim, trim-pomdp-lam0.15" in e.value.message and "thr" in e.value.message


def test_override_spec_wins_and_a_bad_one_is_400(routers: Routers) -> None:
    assert routers.resolve("trim", "random:0.1").name == "random:0.1"
    with pytest.raises(ApiError) as e:
        routers.resolve("trim", "thr:2")
    assert e.value.status == 400 and e.value.param == "trim.policy" and "threshold must be in [0, 1]" in e.value.message


def test_bad_configured_router_fails_at_start_naming_it() -> None:
    with pytest.raises(ConfigError, match="router 'trim-x'.*unknown policy 'nope'"):
        Routers("thr:0.5", {"trim-x": "nope:1"})
