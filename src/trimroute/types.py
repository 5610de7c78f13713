"""The one data model shared by the engine, simulator, evaluation, training and server.

Everything is an immutable dataclass with a lossless JSON round trip (``to_dict`` / ``from_dict``).
Names follow DESIGN.md §2: problem, step, proposal, score, action, trajectory, role, usage.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from enum import Enum
from typing import Any, Literal

from trimroute.errors import DataError

Role = Literal["weak", "strong", "scorer"]
ROLES: tuple[Role, ...] = ("weak", "strong", "scorer")


class Action(str, Enum):
    """What a policy decides for the newest weak proposal."""

    CONTINUE = "continue"
    REGENERATE = "regenerate"


class FinishReason(str, Enum):
    """Why one generation call stopped."""

    STOP = "stop"  # the step separator was produced
    EOS = "eos"  # the model ended its answer
    LENGTH = "length"  # max tokens reached


class StopReason(str, Enum):
    """Why a whole solution ended."""

    ANSWER = "answer"  # a step contains \\boxed{
    EOS = "eos"  # the model ended without the separator
    LENGTH = "length"  # a step hit its token limit
    MAX_STEPS = "max_steps"
    TOKEN_CAP = "token_cap"


@dataclass(frozen=True)
class Problem:
    """One task. ``answer`` is the reference answer when known."""

    id: str
    text: str
    answer: str | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "text": self.text, "answer": self.answer, "meta": dict(self.meta)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Problem:
        return cls(id=str(d["id"]), text=d["text"], answer=d.get("answer"), meta=dict(d.get("meta") or {}))


@dataclass(frozen=True)
class Message:
    role: Literal["system", "user", "assistant"]
    content: str


@dataclass(frozen=True)
class StepRequest:
    """What a generator receives: a chat whose last message is the assistant pre-fill to continue.

    The pre-fill already ends with the step separator; generators must send it byte-exact.
    """

    messages: tuple[Message, ...]
    max_tokens: int
    seed: int | None = None
    stop: tuple[str, ...] = ("\n\n",)
    logprobs: bool = False
    n_steps: int = 0  # steps in the pre-fill (formats differ in how they write them, so fakes need not parse)

    @property
    def prefill(self) -> str:
        return self.messages[-1].content


@dataclass(frozen=True)
class Generation:
    """What a generator returns for one step."""

    text: str
    prompt_tokens: int
    generated_tokens: int
    finish_reason: FinishReason
    token_logprobs: tuple[float, ...] | None = None
    latency_s: float = 0.0


@dataclass(frozen=True)
class Scores:
    """What a scorer returns: one score in [0, 1] per step, plus the tokens the scorer used."""

    values: tuple[float, ...]
    prompt_tokens: int = 0
    generated_tokens: int = 0
    calls: int = 1


@dataclass(frozen=True)
class Step:
    """One step of a trajectory: an accepted step, or a discarded weak proposal."""

    text: str
    role: Role
    generated_tokens: int
    prompt_tokens: int = 0
    # The decision at this position: the weak proposal's score the policy saw (None if unscored) and the
    # action taken on it. A strong step carries the score of the proposal it replaced.
    score: float | None = None
    action: Action | None = None
    finish_reason: FinishReason = FinishReason.STOP
    latency_s: float = 0.0
    calls: int = 1  # > 1 when degenerate output made the engine call the model again
    token_logprobs: tuple[float, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["action"] = self.action.value if self.action else None
        d["finish_reason"] = self.finish_reason.value
        d["token_logprobs"] = list(self.token_logprobs) if self.token_logprobs is not None else None
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Step:
        d = dict(d)
        d["action"] = Action(d["action"]) if d.get("action") else None
        d["finish_reason"] = FinishReason(d.get("finish_reason", "stop"))
        lp = d.get("token_logprobs")
        d["token_logprobs"] = tuple(lp) if lp is not None else None
        return cls(**d)


@dataclass(frozen=True)
class RoleUsage:
    """Usage of one role. ``generated_tokens`` includes ``discarded_tokens``."""

    calls: int = 0
    prompt_tokens: int = 0
    generated_tokens: int = 0
    discarded_tokens: int = 0

    def __add__(self, other: RoleUsage) -> RoleUsage:
        return RoleUsage(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))

    def to_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class Usage:
    """Usage per role (DESIGN.md §2: usage is always reported per role).

    ``speculative``: weak steps the engine started before a decision and threw away when the proposal was
    regenerated (``EngineConfig.speculate``); they are no role's accepted or discarded tokens.
    ``prefill``: the strong model's shadow prefills (``EngineConfig.shadow_prefill``): prompts sent ahead of a
    possible regeneration to warm its prefix cache; their one generated token each is no strong step's.
    """

    weak: RoleUsage = RoleUsage()
    strong: RoleUsage = RoleUsage()
    scorer: RoleUsage = RoleUsage()
    speculative: RoleUsage = RoleUsage()
    prefill: RoleUsage = RoleUsage()

    def add(self, role: Role, **counts: int) -> Usage:
        return replace(self, **{role: getattr(self, role) + RoleUsage(**counts)})

    def __add__(self, other: Usage) -> Usage:
        return Usage(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))

    def to_dict(self) -> dict[str, dict[str, int]]:
        return {f.name: getattr(self, f.name).to_dict() for f in fields(self)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Mapping[str, int]]) -> Usage:
        return cls(**{f.name: RoleUsage(**d.get(f.name, {})) for f in fields(cls)})


@dataclass(frozen=True)
class Trajectory:
    """The whole record of one problem (DESIGN.md §2)."""

    problem: Problem
    steps: tuple[Step, ...]
    discarded: tuple[Step, ...]
    stop_reason: StopReason
    usage: Usage
    policy: str
    final_answer: str | None = None
    correct: bool | None = None
    wall_time_s: float = 0.0
    meta: Mapping[str, Any] = field(default_factory=dict)
    # where the wall time went: first_step_s (to the first accepted step), and the time the loop waited on
    # weak_s / strong_s / scorer_s, the rest being engine_s (see ``Engine.solve``)
    timing: Mapping[str, float] = field(default_factory=dict)

    @property
    def strong_tokens(self) -> int:
        """The cost C of DESIGN.md §1: tokens generated by the strong model."""
        return self.usage.strong.generated_tokens

    @property
    def escalations(self) -> int:
        return sum(1 for s in self.steps if s.action is Action.REGENERATE)

    @property
    def solution(self) -> str:
        return "\n\n".join(s.text for s in self.steps)

    def to_dict(self) -> dict[str, Any]:
        return {
            "problem": self.problem.to_dict(),
            "steps": [s.to_dict() for s in self.steps],
            "discarded": [s.to_dict() for s in self.discarded],
            "stop_reason": self.stop_reason.value,
            "usage": self.usage.to_dict(),
            "policy": self.policy,
            "final_answer": self.final_answer,
            "correct": self.correct,
            "wall_time_s": self.wall_time_s,
            "meta": dict(self.meta),
            "timing": dict(self.timing),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Trajectory:
        try:
            return cls(
                problem=Problem.from_dict(d["problem"]),
                steps=tuple(Step.from_dict(s) for s in d["steps"]),
                discarded=tuple(Step.from_dict(s) for s in d.get("discarded", [])),
                stop_reason=StopReason(d["stop_reason"]),
                usage=Usage.from_dict(d["usage"]),
                policy=d["policy"],
                final_answer=d.get("final_answer"),
                correct=d.get("correct"),
                wall_time_s=d.get("wall_time_s", 0.0),
                meta=dict(d.get("meta") or {}),
                timing=dict(d.get("timing") or {}),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise DataError(f"not a trajectory record ({e!r}); was it written by trimroute?") from e

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_json(cls, line: str) -> Trajectory:
        try:
            return cls.from_dict(json.loads(line))
        except json.JSONDecodeError as e:
            raise DataError(f"trajectory line is not JSON: {e}") from e


@dataclass(frozen=True)
class Observation:
    """What a policy sees when deciding on the newest weak proposal (pure input of ``decide``).

    ``scores[-1]`` and ``step_tokens[-1]`` belong to the proposal; earlier entries to accepted steps
    (the scorer re-scores the whole history each time, so earlier scores include strong steps).
    ``actions`` are the decisions taken at earlier positions, which lets stateful policies (the
    POMDP belief) be recomputed from the observation alone.
    """

    problem_id: str
    scores: tuple[float, ...]
    step_tokens: tuple[int, ...]
    actions: tuple[Action, ...]
    strong_tokens_spent: int
    budget_left: int | None
    is_final: bool = False

    @property
    def step_index(self) -> int:
        """0-based index of the proposal's position."""
        return len(self.scores) - 1

    @property
    def score(self) -> float:
        return self.scores[-1]

    @property
    def tokens(self) -> int:
        return self.step_tokens[-1]

    @property
    def min_prev_score(self) -> float:
        """Min score over previous steps; 1.0 at the first step (nothing wrong yet)."""
        return min(self.scores[:-1], default=1.0)

    @property
    def prod_prev_score(self) -> float:
        return math.prod(self.scores[:-1])
