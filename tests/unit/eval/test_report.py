"""Calibration to a target, merging runs and price tables, on saved scripted runs."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import yaml

from trimroute.config import load_run_config
from trimroute.errors import ConfigError, DataError
from trimroute.eval.methods import parse_methods
from trimroute.eval.metrics import Price
from trimroute.eval.prices import load_prices, role_prices
from trimroute.eval.report import calibrate, merge_runs, write_policy_config
from trimroute.eval.results import compute_metrics, render_markdown
from trimroute.eval.rundir import RunDir
from trimroute.eval.sweep import run_sweep

from .test_sweep import PROBLEMS, make_engine


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> RunDir:
    path = tmp_path_factory.mktemp("cal") / "run"
    engine, *_ = make_engine()
    setup = {"dataset": "scripted", "run_config": {"policy": "thr:0.5", "engine": {"max_steps": 4}}}
    methods = parse_methods(["thr:0,0.5,1 automix"])
    asyncio.run(run_sweep(engine, PROBLEMS, methods, RunDir(path), setup=setup))
    return RunDir(path)


def test_target_share_picks_the_most_accurate_point_within_the_budget(run: RunDir) -> None:
    c = calibrate(run, target_share=0.5, n_resamples=100)
    # thr:0.5 escalates only the wrong steps: full accuracy at a fraction of the strong-only cost
    assert c.policy == "thr:0.5" and c.accuracy == 1.0 and c.pgr == 1.0
    assert c.tokens_ci.low is not None and c.tokens_ci.high is not None
    assert c.share <= 0.5 and c.tokens_ci.low <= c.mean_strong_tokens <= c.tokens_ci.high
    assert calibrate(run, target_share=0.0, n_resamples=100).policy == "thr:0"


def test_target_budget_and_pgr(run: RunDir) -> None:
    assert calibrate(run, target_budget=1e9, n_resamples=100).policy == "thr:0.5"  # cheaper than thr:1, as accurate
    assert calibrate(run, target_pgr=0.8, n_resamples=100).policy == "thr:0.5"


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({}, ConfigError, "exactly one target"),
        ({"target_share": 0.2, "target_pgr": 0.5}, ConfigError, "exactly one target"),
        ({"target_share": 1.5}, ConfigError, "fraction"),
        ({"target_pgr": 0.8, "method": "automix:prod"}, ConfigError, "whole queries"),
        ({"target_pgr": 0.8, "method": "pomdp"}, ConfigError, "no method 'pomdp'"),
        ({"target_budget": -1}, ConfigError, ">= 0"),
    ],
)
def test_bad_targets_say_what_is_wrong(run: RunDir, kwargs: dict, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        calibrate(run, n_resamples=10, **kwargs)


def test_written_config_loads_in_trim_run(run: RunDir, tmp_path: Path) -> None:
    new = write_policy_config(run, "thr:0.5", tmp_path / "new.yaml")
    config = load_run_config(new)
    assert config.policy == "thr:0.5" and config.engine.max_steps == 4
    existing = tmp_path / "mine.yaml"
    existing.write_text("policy: weak\nengine: {max_steps: 7}\n")
    write_policy_config(run, "thr:0.5", existing)
    assert yaml.safe_load(existing.read_text()) == {"policy": "thr:0.5", "engine": {"max_steps": 7}}
    with pytest.raises(ConfigError, match="YAML"):
        write_policy_config(run, "thr:0.5", tmp_path / "x.toml")


def test_merging_a_run_with_itself_keeps_both_curves_apart(run: RunDir) -> None:
    points = merge_runs([run.path, run.path])
    names = [p.name for p in points]
    assert "weak" in names and "run/weak" not in names and "run/thr:0.5" in names
    results = compute_metrics(points, n_resamples=20)
    assert results["curves"]["run/thr"]["cpt"] == results["curves"]["thr"]["cpt"]
    assert "`run/thr:0.5`" in render_markdown(results)
    with pytest.raises(DataError, match="not a trim eval run"):
        merge_runs([run.path.parent / "nothing"])


def test_price_table_maps_models_to_roles(tmp_path: Path) -> None:
    path = tmp_path / "prices.yaml"
    path.write_text("small: {input: 0.1, output: 0.4}\nbig: {input: 3, output: 15}\n")
    table = load_prices(path)
    assert role_prices(table, {"weak": "small", "strong": "big", "scorer": "judge"}) == {
        "weak": Price(0.1, 0.4),
        "strong": Price(3.0, 15.0),
    }
    with pytest.raises(ConfigError, match="no entry for the strong model 'huge'"):
        role_prices(table, {"weak": "small", "strong": "huge"})
    path.write_text("small: {input: 0.1}\n")
    with pytest.raises(ConfigError, match="input"):
        load_prices(path)
