"""Every policy spec works in ``trim eval --methods``; only the swept value takes a comma list."""

from __future__ import annotations

from pathlib import Path

import pytest

from trimroute.errors import ArtifactError, ConfigError
from trimroute.eval.methods import PolicyPoints, parse_methods

POMDP = "pomdp:preset=qwen1.5b-7b,token_bins=1"


def test_a_keyed_policy_spec_is_one_point() -> None:
    spec = f"{POMDP},lam=1e-3"
    assert parse_methods([spec])[2] == PolicyPoints("pomdp", (spec,))


def test_a_keyed_spec_sweeps_its_one_comma_list() -> None:
    method = parse_methods([f"{POMDP},lam=1e-3,5e-4"])[2]
    assert method == PolicyPoints("pomdp", (f"{POMDP},lam=0.001", f"{POMDP},lam=0.0005"))


def test_value_lists_and_progressions_still_expand() -> None:
    assert parse_methods(["random:0.1,0.3,...,0.5"])[2] == PolicyPoints(
        "random", ("random:0.1", "random:0.3", "random:0.5")
    )


def test_a_modifier_after_the_list_applies_to_every_point() -> None:
    method = parse_methods(["thr:0.3,0.5:keep-final"])[2]
    assert method == PolicyPoints("thr", ("thr:0.3:keep-final", "thr:0.5:keep-final"))


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("pomdp:preset=a,b,lam=1e-3,5e-4", "only one value can be swept .* preset and lam"),
        ("pomdp:preset=a,b,lam=1e-3", "values must be numbers"),
        ("pomdp:preset=qwen1.5b-7b", "preset=NAME,lam=L"),
    ],
)
def test_bad_keyed_specs_say_what_is_wrong(spec: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_methods([spec])


def test_a_list_of_folders_is_one_point_per_folder(tmp_path: Path) -> None:
    first, second = tmp_path / "lam=1e-3", tmp_path / "lam=5e-4"  # solved POMDP folders are named so
    first.mkdir()
    second.mkdir()
    # Each folder is parsed on its own (and, being empty, rejected): not as numbers, not as key=value.
    with pytest.raises(ArtifactError, match=f"'{first}' is not a policy artifact"):
        parse_methods([f"agg:{first},{second}"])
