"""TRIM: targeted step-level routing between a weak and a strong LLM (Kapoor et al., ICLR 2026).

A weak model writes a solution step by step, a step scorer scores each step, and a policy sends only the
critical steps to the strong model, which rewrites that one step.
"""

from trimroute.engine import Engine, EngineConfig
from trimroute.errors import TrimError
from trimroute.generators.base import Generator
from trimroute.policies import Policy, parse_policy
from trimroute.scorers.base import Scorer
from trimroute.types import (
    Action,
    FinishReason,
    Generation,
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

__version__ = "0.1.0"

__all__ = [
    "Action",
    "Engine",
    "EngineConfig",
    "FinishReason",
    "Generation",
    "Generator",
    "Observation",
    "Policy",
    "Problem",
    "RoleUsage",
    "Scorer",
    "Scores",
    "Step",
    "StepRequest",
    "StopReason",
    "Trajectory",
    "TrimError",
    "Usage",
    "parse_policy",
]
