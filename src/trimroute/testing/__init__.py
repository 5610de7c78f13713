"""Fakes and conformance checks for tests of trimroute and of user plug-ins.

``ScriptedGenerator`` and ``ScriptedScorer`` implement the backend protocols without a model; tests use
them instead of patching module paths. ``check_policy`` checks a policy object against the protocol.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from trimroute.policies.base import Policy
from trimroute.types import Action, FinishReason, Generation, Observation, Problem, Scores, Step, StepRequest

__all__ = ["ScriptedGenerator", "ScriptedScorer", "check_policy", "count_tokens"]


def count_tokens(text: str) -> int:
    """Token count used by the fakes: whitespace-separated words."""
    return len(text.split())


@dataclass
class ScriptedGenerator:
    """A generator that answers from a script.

    ``script`` maps the request to the step text: a list is read by step index (the number of accepted
    steps in the pre-fill), a callable gets the request. Text ending in ``"<eos>"`` finishes with EOS.
    Every request is recorded in ``requests``.
    """

    model: str
    script: Sequence[str] | Callable[[StepRequest], str]
    requests: list[StepRequest] = field(default_factory=list)

    async def generate_step(self, request: StepRequest) -> Generation:
        self.requests.append(request)
        if callable(self.script):
            text = self.script(request)
        else:
            n = request.n_steps
            text = self.script[min(n, len(self.script) - 1)]
        finish = FinishReason.STOP
        if text.endswith("<eos>"):
            text, finish = text[: -len("<eos>")], FinishReason.EOS
        tokens = count_tokens(text)
        if tokens > request.max_tokens:
            text, tokens, finish = " ".join(text.split()[: request.max_tokens]), request.max_tokens, FinishReason.LENGTH
        return Generation(
            text=text,
            prompt_tokens=sum(count_tokens(m.content) for m in request.messages),
            generated_tokens=tokens,
            finish_reason=finish,
            token_logprobs=tuple(-0.1 for _ in range(tokens)) if request.logprobs else None,
        )

    async def aclose(self) -> None:
        return None


@dataclass
class ScriptedScorer:
    """A scorer whose score for a step is ``score_fn(step)`` (default: 0.1 if "wrong" in it, else 0.9)."""

    score_fn: Callable[[Step], float] = lambda s: 0.1 if "wrong" in s.text else 0.9
    name: str = "scripted"
    calls: int = 0

    async def score(self, problem: Problem, steps: Sequence[Step]) -> Scores:
        self.calls += 1
        return Scores(tuple(self.score_fn(s) for s in steps), prompt_tokens=sum(count_tokens(s.text) for s in steps))

    async def aclose(self) -> None:
        return None


def check_policy(policy: Policy) -> None:
    """Raise AssertionError if ``policy`` breaks the policy protocol (types, purity on a sample)."""
    assert isinstance(policy, Policy), f"{policy!r} does not implement Policy"
    assert isinstance(policy.name, str) and policy.name
    for scores in [(0.9,), (0.9, 0.2), (0.5, 0.5, 0.05)]:
        obs = Observation(
            problem_id="p",
            scores=scores,
            step_tokens=(20,) * len(scores),
            actions=(Action.CONTINUE,) * (len(scores) - 1),
            strong_tokens_spent=0,
            budget_left=None,
        )
        first = policy.decide(obs)
        assert isinstance(first, Action), f"decide returned {first!r}, not an Action"
        assert policy.decide(obs) is first, "decide is not pure: same observation, different action"
