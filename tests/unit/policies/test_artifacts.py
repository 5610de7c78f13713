import json
from typing import cast

import numpy as np
import pytest

from trimroute.errors import ArtifactError, ConfigError
from trimroute.policies import parse_policy
from trimroute.policies.agg import LearnedPolicy
from trimroute.policies.artifacts import load_artifact, save_artifact
from trimroute.policies.features import feature_set
from trimroute.policies.networks import build_network, network_spec
from trimroute.testing import check_policy
from trimroute.types import Action, Observation


def save(folder, kind="agg", features="official", lam=1e-3):
    fs = feature_set(features)
    network = build_network(fs, network_spec(kind))
    config = {
        "kind": kind,
        "features": fs.to_dict(),
        "lam": lam,
        "network": network_spec(kind),
        "validation": {"best": {"return": 0.5}},
    }
    save_artifact(folder, network, config)
    return network


@pytest.mark.parametrize("kind, features", [("agg", "official"), ("agg", "budget"), ("seq", "seq")])
def test_round_trip_gives_the_same_network_and_a_pure_policy(tmp_path, kind, features):
    original = save(tmp_path, kind, features)
    policy = parse_policy(f"{kind}:{tmp_path}")
    assert isinstance(policy, LearnedPolicy) and policy.name == f"{kind}:{tmp_path}"
    check_policy(policy)
    for key, value in original.state_dict().items():
        np.testing.assert_array_equal(policy.network.state_dict()[key].numpy(), value.numpy())


def test_folder_is_self_describing_and_holds_no_pickles(tmp_path):
    save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"]
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["format"] == "trimroute.rl-policy" and config["kind"] == "agg" and config["lam"] == 1e-3
    assert config["features"]["columns"] == ["score", "min_prev", "tokens", "step", "prod_prev"]
    assert config["network"]["net_arch"] == {"pi": [128, 128], "vf": [128, 128]}
    assert {"trimroute", "torch", "stable-baselines3"} <= set(config["versions"])


def test_decide_is_the_networks_argmax(tmp_path):
    network = save(tmp_path)
    policy = cast(LearnedPolicy, parse_policy(f"agg:{tmp_path}"))
    obs = Observation("p", (0.9, 0.2), (40, 80), (Action.CONTINUE,), 0, None)
    x = policy.features(obs)
    logits = network.get_distribution(network.obs_to_tensor(x)[0]).distribution.logits
    expected = Action.REGENERATE if int(logits.argmax()) == 1 else Action.CONTINUE
    assert policy.decide(obs) is expected


def test_kind_mismatch_says_how_to_load_it(tmp_path):
    save(tmp_path, "seq", "seq")
    with pytest.raises(ArtifactError, match=f"seq:{tmp_path}"):
        parse_policy(f"agg:{tmp_path}")


def test_features_that_do_not_match_this_code_are_rejected(tmp_path):
    save(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["features"]["columns"] = ["score", "tokens"]
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ArtifactError, match="does not match"):
        load_artifact(tmp_path, "agg")


def test_weights_of_another_feature_set_are_rejected(tmp_path):
    save(tmp_path, features="budget")  # 7 inputs
    config = json.loads((tmp_path / "config.json").read_text())
    config["features"] = feature_set("official").to_dict()  # claims 5
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ArtifactError, match="weights do not fit"):
        load_artifact(tmp_path, "agg")


def test_missing_or_broken_artifacts_give_clear_errors(tmp_path):
    with pytest.raises(ArtifactError, match="trim train"):
        parse_policy(f"agg:{tmp_path / 'nowhere'}")
    save(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(ArtifactError, match="model.safetensors"):
        parse_policy(f"agg:{tmp_path}")
    (tmp_path / "config.json").write_text('{"format": "something else"}')
    with pytest.raises(ArtifactError, match="not a trimroute.rl-policy"):
        parse_policy(f"agg:{tmp_path}")


def test_the_spec_needs_a_path():
    with pytest.raises(ConfigError, match="artifact folder"):
        parse_policy("seq")
