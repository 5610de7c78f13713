"""The Ray Serve deployment examples stay true: their TRIM config is valid, they name the deployments and
builder arguments that exist, and the builder turns them into an application (no cluster needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from trimroute.errors import ConfigError
from trimroute.serve.settings import ServerConfig

EXAMPLES = Path(__file__).parents[3] / "examples" / "ray_serve"


def serve_configs() -> dict[str, dict[str, Any]]:
    rayservice = yaml.safe_load((EXAMPLES / "rayservice.yaml").read_text())
    return {
        "serve_config.yaml": yaml.safe_load((EXAMPLES / "serve_config.yaml").read_text()),
        "rayservice.yaml": yaml.safe_load(rayservice["spec"]["serveConfigV2"]),
    }


# importing ray.serve warns about its own use of pydantic; nothing of ours
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.mark.parametrize("name", ["serve_config.yaml", "rayservice.yaml"])
def test_example_builds_the_application(name: str) -> None:
    from trimroute.serve.ray_serve import INGRESS, REPLICA, build

    (app,) = serve_configs()[name]["applications"]
    assert app["import_path"] == "trimroute.serve.ray_serve:build"
    assert {d["name"] for d in app["deployments"]} == {REPLICA, INGRESS}
    args = dict(app["args"])
    if isinstance(args["config"], dict):
        ServerConfig.from_mapping(args["config"])  # typos in the inline config fail here
    else:
        args["config"] = {"policy": "weak"}  # a path on the cluster's nodes
    assert build(args) is not None


def test_builder_rejects_unknown_arguments() -> None:
    from trimroute.serve.ray_serve import build

    with pytest.raises(ConfigError, match="unknown argument 'replica'"):
        build({"config": {"policy": "weak"}, "replica": 2})
    with pytest.raises(ConfigError, match="pass config=FILE"):
        build({})
