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
