"""The public API users program against is pinned: a name leaves or joins ``__all__`` only on purpose."""

from __future__ import annotations

import trimroute

PUBLIC = {
    "Action", "ArtifactError", "BackendConfig", "BackendError", "ConfigError", "DataError", "Engine",
    "EngineConfig", "FinishReason", "Generation", "Generator", "Message", "Observation", "Policy", "Problem",
    "RoleUsage", "RunConfig", "Scorer", "ScorerConfig", "ScorerError", "Scores", "Step", "StepRequest",
    "StopReason", "Trajectory", "TrajectoryWriter", "TrimError", "Usage", "build_engine", "load_run_config",
    "parse_policy", "read_trajectories", "route",
}  # fmt: skip


def test_all_is_pinned_and_every_name_exists() -> None:
    assert set(trimroute.__all__) == PUBLIC
    assert len(trimroute.__all__) == len(PUBLIC)  # no duplicates
    for name in trimroute.__all__:
        assert getattr(trimroute, name) is not None


def test_errors_form_one_tree() -> None:
    for name in ("ArtifactError", "BackendError", "ConfigError", "DataError", "ScorerError"):
        assert issubclass(getattr(trimroute, name), trimroute.TrimError)


async def test_the_readme_api_runs(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The README's ten lines, on the simulator instead of servers."""
    from trimroute.config import sim_config
    from trimroute.sim.backend import simulated_problems

    engine = trimroute.build_engine(sim_config("qwen1.5b-7b"))
    try:
        t = await engine.solve(simulated_problems(1)[0], trimroute.parse_policy("thr:0.35"))
        assert t.steps and t.final_answer is not None
        problems = simulated_problems(5)
        out = tmp_path / "runs" / "mine.jsonl"
        done = await trimroute.route(engine, problems, trimroute.parse_policy("thr:0.35"), out=out)
        assert [d.problem.id for d in done] == [p.id for p in problems] and all(d.correct is not None for d in done)
        again = await trimroute.route(engine, problems, trimroute.parse_policy("thr:0.35"), out=out)
        assert again == done and len(list(trimroute.read_trajectories(out))) == 5  # resumed, not rerun
    finally:
        await engine.aclose()
