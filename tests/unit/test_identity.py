"""Configuration identity: where a backend runs never changes cache keys or blocks a resume; what it computes does."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from trimroute.config import BackendConfig, EngineConfig, RunConfig, ScorerConfig, identity, run_identity, sim_config
from trimroute.errors import ConfigError
from trimroute.eval.methods import parse_methods
from trimroute.eval.rundir import RunDir
from trimroute.eval.sweep import evaluate
from trimroute.sim.backend import simulated_problems

LOCAL = BackendConfig(kind="llamacpp", model="m", options={"model_path": "/a/m.gguf", "n_threads": 2, "n_ctx": 2048})


def test_where_fields_and_options_are_left_out() -> None:
    moved = dataclasses.replace(LOCAL, base_url="http://other:1/v1", timeout_s=5.0, max_retries=0,
                                options={"model_path": "/b/m.gguf", "n_threads": 16, "n_ctx": 2048})  # fmt: skip
    assert identity(moved) == identity(LOCAL)
    assert "base_url" not in identity(LOCAL) and identity(LOCAL)["options"] == {"n_ctx": 2048}
    for what in ({"temperature": 0.0}, {"model": "other"}, {"options": {**LOCAL.options, "n_ctx": 4096}}):
        assert identity(dataclasses.replace(LOCAL, **what)) != identity(LOCAL)  # type: ignore[arg-type]
    scorer = ScorerConfig(kind="qwen-prm", model="prm", base_url="http://a:1")
    assert identity(scorer) == identity(dataclasses.replace(scorer, base_url="http://b:2", api_key_env=None))


def test_a_fitted_artifact_is_identified_by_its_content_not_its_path(tmp_path: Path) -> None:
    def composite(path: Path) -> ScorerConfig:
        return ScorerConfig(kind="composite", model="m", options={"artifact": str(path), "n_ctx": 512})

    first, moved = tmp_path / "fit.json", tmp_path / "elsewhere.json"
    first.write_text('{"weights": [1.0]}')
    moved.write_text('{"weights": [1.0]}')
    before = identity(composite(first))
    assert before == identity(composite(moved))  # moved or copied: its cached scores still apply
    first.write_text('{"weights": [2.0]}')  # refitted in place: the old fit's scores must not
    assert identity(composite(first)) != before
    missing = tmp_path / "missing.json"
    assert identity(composite(missing))["options"]["artifact"] == str(missing)  # building it names the error


def test_engine_speed_settings_are_not_identity() -> None:
    fast = RunConfig(engine=EngineConfig(concurrency=64, backend_concurrency={"weak": 32}))
    assert run_identity(fast) == run_identity(RunConfig())
    assert run_identity(RunConfig(engine=EngineConfig(max_steps=5))) != run_identity(RunConfig())
    assert "policy" not in run_identity(RunConfig(policy="thr:0.1"))


async def test_a_run_resumes_under_other_concurrency_but_not_other_rules(tmp_path: Path) -> None:
    problems, methods = simulated_problems(12), parse_methods(["thr:0.5"])
    run = RunDir(tmp_path / "run")

    async def sweep(engine: EngineConfig) -> dict:
        config = sim_config("qwen1.5b-7b", engine)
        return await evaluate(config, problems, methods, run, dataset={"spec": "sim"}, cache=tmp_path / "c.sqlite")

    first = await sweep(EngineConfig(concurrency=2))
    again = await sweep(EngineConfig(concurrency=16))  # resumes: nothing to do, every call cached
    assert again["invocation"]["made"] == 0 and first["points"] == again["points"]
    with pytest.raises(ConfigError, match="another setup"):
        await sweep(EngineConfig(max_steps=5))
