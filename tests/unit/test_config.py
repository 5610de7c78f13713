from __future__ import annotations

from pathlib import Path

import pytest

from trimroute.config import RunConfig, from_dict, load_run_config, parse_override
from trimroute.errors import ConfigError


def test_yaml_and_toml_files_with_overrides(tmp_path: Path) -> None:
    y = tmp_path / "c.yaml"
    y.write_text("policy: thr:0.3\nweak: {base_url: http://w/v1, model: w}\nengine: {max_steps: 12}\n")
    cfg = load_run_config(y, {"engine.max_steps": 20, "strong.model": "s"})
    assert cfg.policy == "thr:0.3" and cfg.weak.base_url == "http://w/v1"
    assert cfg.engine.max_steps == 20 and cfg.strong.model == "s"
    t = tmp_path / "c.toml"
    t.write_text('policy = "weak"\n[engine]\nbudget = 500\n')
    assert load_run_config(t).engine.budget == 500


def test_unknown_keys_are_rejected_with_the_valid_ones() -> None:
    with pytest.raises(ConfigError, match="unknown config key 'engine.max_step'.*max_steps"):
        from_dict(RunConfig, {"engine": {"max_step": 3}})
    with pytest.raises(ConfigError, match="unknown config key 'polcy'"):
        from_dict(RunConfig, {"polcy": "weak"})


def test_bad_values_and_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="api must be"):
        from_dict(RunConfig, {"weak": {"api": "grpc"}})
    with pytest.raises(ConfigError, match="must be a mapping"):
        from_dict(RunConfig, {"weak": "http://x"})
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_run_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("weak: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid"):
        load_run_config(bad)


def test_parse_override() -> None:
    assert parse_override("engine.budget=100") == ("engine.budget", 100)
    assert parse_override("engine.seed=null") == ("engine.seed", None)
    with pytest.raises(ConfigError, match="section.key=value"):
        parse_override("budget")
