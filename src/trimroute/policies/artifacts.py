"""Published RL policies: a folder with ``config.json`` and ``model.safetensors`` (no pickles).

``config.json`` says everything needed to rebuild and judge the policy: the kind (agg/seq), the feature
set, λ, the network, the training setup, the validation scores and the library versions. The weights are
the state_dict of the SB3 actor-critic network. SB3's own zip checkpoints are only used to resume
training (``learn.train``).
"""

from __future__ import annotations

import json
import platform
from collections.abc import Mapping
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from safetensors import SafetensorError
from safetensors.torch import load_model, save_model
from stable_baselines3.common.policies import ActorCriticPolicy

from trimroute.errors import ArtifactError
from trimroute.policies.features import FeatureSet
from trimroute.policies.networks import build_network

__all__ = ["FORMAT", "load_artifact", "save_artifact"]

FORMAT = "trimroute.rl-policy"
FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
LIBRARIES = ("trimroute", "torch", "stable-baselines3", "gymnasium", "numpy", "safetensors")


def library_versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for lib in LIBRARIES:
        try:
            found[lib] = version(lib)
        except PackageNotFoundError:
            found[lib] = "not installed"
    return found


def save_artifact(folder: Path, network: ActorCriticPolicy, config: Mapping[str, Any]) -> Path:
    """Write ``network``'s weights and ``config`` (kind, features, lam, network, training, validation) to
    ``folder``, atomically per file so a killed run never leaves a half-written policy."""
    missing = {"kind", "features", "lam", "network"} - set(config)
    if missing:
        raise ValueError(f"artifact config lacks {sorted(missing)}")
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / (WEIGHTS_FILE + ".tmp")
    save_model(network, str(tmp), metadata={"format": FORMAT})  # drops SB3's aliased extractor copies
    tmp.replace(folder / WEIGHTS_FILE)
    full = {"format": FORMAT, "format_version": FORMAT_VERSION, **config, "versions": library_versions()}
    tmp = folder / (CONFIG_FILE + ".tmp")
    tmp.write_text(json.dumps(full, indent=1) + "\n")
    tmp.replace(folder / CONFIG_FILE)
    return folder


def read_config(folder: Path) -> dict[str, Any]:
    path = folder / CONFIG_FILE
    try:
        config = json.loads(path.read_text())
    except FileNotFoundError:
        raise ArtifactError(
            f"{str(folder)!r} is not a policy artifact (no {CONFIG_FILE}); train one with `trim train`"
        ) from None
    except (OSError, json.JSONDecodeError) as e:
        raise ArtifactError(f"cannot read {str(path)!r}: {e}") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise ArtifactError(f"{str(path)!r} is not a {FORMAT} artifact")
    if config.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(
            f"{str(path)!r} has format version {config.get('format_version')}, this trimroute reads {FORMAT_VERSION}"
        )
    return config


def load_artifact(folder: str | Path, kind: str) -> tuple[FeatureSet, ActorCriticPolicy, dict[str, Any]]:
    """The feature set, the network (eval mode) and the config of a saved policy of ``kind`` (agg/seq)."""
    folder = Path(folder)
    config = read_config(folder)
    if config.get("kind") != kind:
        raise ArtifactError(
            f"{str(folder)!r} holds a {config.get('kind')!r} policy; load it as {config.get('kind')}:{folder}"
        )
    features = FeatureSet.from_dict(config.get("features") or {})
    if features.kind != kind:
        raise ArtifactError(f"{str(folder)!r}: feature set {features.name!r} is for {features.kind}, not {kind}")
    try:
        network = build_network(features, config["network"])
        load_model(network, str(folder / WEIGHTS_FILE), strict=True)
    except (KeyError, TypeError) as e:
        raise ArtifactError(f"{str(folder)!r}: bad network description in {CONFIG_FILE} ({e!r})") from None
    except (OSError, SafetensorError) as e:
        raise ArtifactError(f"{str(folder)!r}: cannot read {WEIGHTS_FILE}: {e}") from None
    except RuntimeError as e:  # load_state_dict: missing keys or shape mismatch
        first = str(e).splitlines()[0]
        raise ArtifactError(
            f"{str(folder)!r}: weights do not fit the {features.name!r} features and the network in {CONFIG_FILE} "
            f"({first}); retrain the policy"
        ) from None
    network.set_training_mode(False)
    return features, network, config
