"""The OpenAI wire format: request models (pydantic, only here at the HTTP boundary) that convert
themselves to ``RouteParams``, and the response / stream-chunk bodies built from a ``Trajectory``.

TRIM's additions ride in an extension object named ``trim``: in requests, routing options
(``policy``, ``threshold``, ``budget``, ``max_steps``, ``trace``); in responses, usage per role,
escalated steps, the stop reason and, when asked, the step trace.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from trimroute.types import Problem, Step, StopReason, Trajectory, Usage

__all__ = [
    "ChatCompletionRequest",
    "CompletionRequest",
    "Fallback",
    "RouteParams",
    "TrimOptions",
    "chunk",
    "extension",
    "final_chunk",
    "response",
    "usage_body",
    "usage_chunk",
]

Kind = Literal["chat", "completion"]


@dataclass(frozen=True)
class RouteParams:
    """One request in the engine's terms (what the handler needs, nothing of HTTP)."""

    kind: Kind
    id: str
    created: int
    model: str
    problem: Problem
    policy: str | None = None  # a policy spec overriding the model's router
    max_tokens: int | None = None
    max_steps: int | None = None
    budget: int | None = None
    seed: int | None = None
    trace: bool = False
    stream: bool = False
    include_usage: bool = False


@dataclass(frozen=True)
class Fallback:
    """The policy used instead of the requested one while the scorer is down, and why."""

    policy: str
    reason: str


class TrimOptions(BaseModel):
    """The ``trim`` extension of a request (``extra_body={"trim": {...}}`` with the openai client)."""

    model_config = ConfigDict(extra="forbid")

    policy: str | None = Field(default=None, description="policy spec overriding the model's router, e.g. thr:0.6")
    threshold: float | None = Field(default=None, ge=0.0, le=1.0, description="shorthand for policy thr:<threshold>")
    budget: int | None = Field(default=None, ge=0, description="cap on strong-model tokens for this request")
    max_steps: int | None = Field(default=None, ge=1)
    trace: bool = Field(default=False, description="return every step: text, role, score, action, tokens")

    @model_validator(mode="after")
    def _one_policy(self) -> TrimOptions:
        if self.policy is not None and self.threshold is not None:
            raise ValueError("give trim.policy or trim.threshold, not both")
        return self

    def policy_spec(self) -> str | None:
        return self.policy if self.threshold is None else f"thr:{self.threshold:g}"


class StreamOptions(BaseModel):
    include_usage: bool = False


class _RoutedRequest(BaseModel):
    """Fields shared by both endpoints. Unknown OpenAI fields (temperature, ...) are ignored: sampling
    is set per backend in the config, so that both models continue the prefix the same way."""

    model_config = ConfigDict(extra="ignore")

    model: str
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    seed: int | None = None
    n: int = 1
    logprobs: bool | int | None = None
    trim: TrimOptions = Field(default_factory=TrimOptions)

    @model_validator(mode="after")
    def _supported(self) -> _RoutedRequest:
        if self.n != 1:
            raise ValueError(f"n must be 1 (one routed solution per request), got {self.n}")
        if self.logprobs:
            raise ValueError("logprobs are not supported: a routed answer mixes two models' tokens")
        return self

    def _params(self, kind: Kind, problem: Problem, max_tokens: int | None) -> RouteParams:
        return RouteParams(
            kind=kind,
            id=problem.id,
            created=int(time.time()),
            model=self.model,
            problem=problem,
            policy=self.trim.policy_spec(),
            max_tokens=max_tokens,
            max_steps=self.trim.max_steps,
            budget=self.trim.budget,
            seed=self.seed,
            trace=self.trim.trace,
            stream=self.stream,
            include_usage=bool(self.stream_options and self.stream_options.include_usage),
        )


class TextPart(BaseModel):
    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart]

    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)


class ChatCompletionRequest(_RoutedRequest):
    """``POST /v1/chat/completions``. The last message, a user turn, is routed; earlier turns are context."""

    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _last_is_user(self) -> ChatCompletionRequest:
        if self.messages[-1].role != "user":
            raise ValueError(f"the last message must be the user turn to answer, got a {self.messages[-1].role} turn")
        if not self.messages[-1].text().strip():
            raise ValueError("the last user message is empty")
        return self

    def to_params(self) -> RouteParams:
        *earlier, last = self.messages
        history = [{"role": "system" if m.role == "developer" else m.role, "content": m.text()} for m in earlier]
        problem = Problem(id=f"chatcmpl-{uuid.uuid4().hex}", text=last.text(), meta={"history": history})
        return self._params("chat", problem, self.max_completion_tokens or self.max_tokens)


class CompletionRequest(_RoutedRequest):
    """``POST /v1/completions``: the prompt is the question."""

    prompt: str = Field(min_length=1)

    def to_params(self) -> RouteParams:
        problem = Problem(id=f"cmpl-{uuid.uuid4().hex}", text=self.prompt)
        return self._params("completion", problem, self.max_tokens)


def finish_reason(stop: StopReason) -> str:
    return "stop" if stop in (StopReason.ANSWER, StopReason.EOS) else "length"


def usage_body(usage: Usage) -> dict[str, int]:
    """OpenAI ``usage``: summed over weak, strong and scorer (discarded weak tokens included)."""
    prompt = sum(u.prompt_tokens for u in (usage.weak, usage.strong, usage.scorer))
    completion = sum(u.generated_tokens for u in (usage.weak, usage.strong, usage.scorer))
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def extension(params: RouteParams, trajectory: Trajectory, fallback: Fallback | None) -> dict[str, Any]:
    """The ``trim`` object of a response: what no query-level router reports."""
    ext: dict[str, Any] = {
        "policy": trajectory.policy,
        "usage": trajectory.usage.to_dict(),
        "steps": len(trajectory.steps),
        "escalations": trajectory.escalations,
        "stop_reason": trajectory.stop_reason.value,
        "final_answer": trajectory.final_answer,
        "fallback": None if fallback is None else {"policy": fallback.policy, "reason": fallback.reason},
    }
    if params.trace:
        ext["trace"] = {
            "steps": [s.to_dict() for s in trajectory.steps],
            "discarded": [s.to_dict() for s in trajectory.discarded],
        }
    return ext


def _envelope(params: RouteParams, streaming: bool) -> dict[str, Any]:
    obj = "chat.completion.chunk" if streaming else "chat.completion"
    return {
        "id": params.id,
        "object": obj if params.kind == "chat" else "text_completion",
        "created": params.created,
        "model": params.model,
    }


def _choice(params: RouteParams, text: str | None, finish: str | None, streaming: bool, first: bool) -> dict:
    choice: dict[str, Any] = {"index": 0}
    if params.kind == "completion":
        choice["text"] = text or ""
    elif streaming:
        choice["delta"] = ({"role": "assistant"} if first else {}) | ({"content": text} if text is not None else {})
    else:
        choice["message"] = {"role": "assistant", "content": text}
    choice["logprobs"] = None
    choice["finish_reason"] = finish
    return choice


def response(params: RouteParams, trajectory: Trajectory, fallback: Fallback | None) -> dict[str, Any]:
    """The non-streaming answer: the solution's steps joined by the separator."""
    return _envelope(params, False) | {
        "choices": [_choice(params, trajectory.solution, finish_reason(trajectory.stop_reason), False, False)],
        "usage": usage_body(trajectory.usage),
        "trim": extension(params, trajectory, fallback),
    }


def chunk(params: RouteParams, step: Step, index: int) -> dict[str, Any]:
    """One accepted step as a stream chunk; ``trim`` says who wrote it and why."""
    text = step.text if index == 0 else "\n\n" + step.text
    return _envelope(params, True) | {
        "choices": [_choice(params, text, None, True, index == 0)],
        "trim": {"index": index, "role": step.role, "score": step.score, "action": step.action and step.action.value},
    }


def final_chunk(params: RouteParams, trajectory: Trajectory, fallback: Fallback | None) -> dict[str, Any]:
    """The chunk carrying ``finish_reason`` and the ``trim`` summary."""
    first = not trajectory.steps
    return _envelope(params, True) | {
        "choices": [_choice(params, None, finish_reason(trajectory.stop_reason), True, first)],
        "trim": extension(params, trajectory, fallback),
    }


def usage_chunk(params: RouteParams, trajectory: Trajectory) -> dict[str, Any]:
    """The last chunk when ``stream_options.include_usage`` is set (OpenAI: empty ``choices``)."""
    return _envelope(params, True) | {"choices": [], "usage": usage_body(trajectory.usage)}
