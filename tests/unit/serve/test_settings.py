"""The ``serve`` section: read from the ``trim run`` config file, typos and bad values rejected."""

from __future__ import annotations

from pathlib import Path

import pytest

from trimroute.errors import ConfigError
from trimroute.serve.settings import ServerConfig, ServeSettings, load_server_config


def test_the_run_config_file_with_a_serve_section(tmp_path: Path) -> None:
    path = tmp_path / "serve.yaml"
    path.write_text(
        "policy: thr:0.7\n"
        "weak: {kind: openai, model: w, base_url: http://127.0.0.1:1/v1}\n"
        "engine: {max_steps: 12}\n"
        "serve: {routers: {trim-careful: 'thr:0.9'}, scorer_fallback: strong, max_pending: 8}\n"
    )
    config = load_server_config(path)
    assert config.run.policy == "thr:0.7" and config.run.engine.max_steps == 12 and config.run.weak.model == "w"
    assert config.serve == ServeSettings(routers={"trim-careful": "thr:0.9"}, scorer_fallback="strong", max_pending=8)


def test_a_file_without_serve_section_serves_with_defaults() -> None:
    assert ServerConfig.from_mapping({"policy": "weak"}).serve == ServeSettings()


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ({"serve": {"max_pendng": 3}}, "unknown config key 'serve.max_pendng'"),
        ({"sreve": {}}, "unknown config key 'sreve'"),
        ({"serve": {"scorer_fallback": "random"}}, "scorer_fallback must be one of none, weak, strong"),
        ({"serve": {"routers": {"weak": "strong"}}}, "cannot redefine the built-in model 'weak'"),
        ({"serve": {"routers": ["thr:0.5"]}}, "serve.routers must map model names to policy specs"),
        ({"serve": {"max_body_bytes": 0}}, "serve.max_body_bytes must be >= 1"),
        ({"serve": {"request_timeout_s": 0}}, "serve.request_timeout_s must be > 0"),
        ({"serve": []}, "serve. must be a mapping"),
    ],
)
def test_bad_settings_name_the_key(data: dict, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle.replace(".", r"\.").replace("(", r"\(")):
        ServerConfig.from_mapping(data)
