"""TRIM: targeted step-level routing between a weak and a strong LLM (Kapoor et al., ICLR 2026).

A weak model writes a solution step by step, a step scorer scores each step, and a policy sends only the
critical steps to the strong model, which rewrites that one step.

The public API: the data model, the configuration, the engine and the driver around it (``build_engine``,
``route``), policies by spec string, trajectory files, and the error tree (``trimroute.errors``).
"""

from trimroute._version import __version__ as __version__
from trimroute.config import BackendConfig, EngineConfig, RunConfig, ScorerConfig, load_run_config
from trimroute.engine import Engine
from trimroute.errors import (
    ArtifactError,
    BackendError,
    ConfigError,
    DataError,
    ScorerError,
    TrimError,
)
from trimroute.generators.base import Generator
from trimroute.policies import Policy, parse_policy
from trimroute.runner import build_engine, route
from trimroute.scorers.base import Scorer
from trimroute.trajectories import TrajectoryWriter, read_trajectories
from trimroute.types import (
    Action,
    FinishReason,
    Generation,
    Message,
    Observation,
    Problem,
    RoleUsage,
    Scores,
    Step,
    StepRequest,
    StopReason,
    Trajectory,
    Usage,
)

__all__ = [
    "Action",
    "ArtifactError",
    "BackendConfig",
    "BackendError",
    "ConfigError",
    "DataError",
    "Engine",
    "EngineConfig",
    "FinishReason",
    "Generation",
    "Generator",
    "Message",
    "Observation",
    "Policy",
    "Problem",
    "RoleUsage",
    "RunConfig",
    "Scorer",
    "ScorerConfig",
    "ScorerError",
    "Scores",
    "Step",
    "StepRequest",
    "StopReason",
    "Trajectory",
    "TrajectoryWriter",
    "TrimError",
    "Usage",
    "build_engine",
    "load_run_config",
    "parse_policy",
    "read_trajectories",
    "route",
]
