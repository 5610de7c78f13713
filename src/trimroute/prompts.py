"""Prompt assembly, step rules and answer extraction, written once (DESIGN.md §4).

Both models continue exactly the same text: the user message is the instruction followed by the question,
and the assistant turn is pre-filled with ``"Solution:\\n\\n"`` plus the accepted steps, each followed
by the separator ``"\\n\\n"``.
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence

from trimroute.types import Message, Problem, StepRequest

SEPARATOR = "\n\n"
SOLUTION_HEADER = "Solution:" + SEPARATOR
INSTRUCTION = (
    "Solve the following math problem step by step. Separate the steps with a blank line "
    "and put your final answer within \\boxed{}."
)

_NON_CONTENT = set(string.punctuation + string.whitespace)


def prefill(steps: Sequence[str]) -> str:
    """The assistant pre-fill for a solution whose accepted steps are ``steps``."""
    return SOLUTION_HEADER + "".join(s + SEPARATOR for s in steps)


def messages(problem: Problem, steps: Sequence[str], instruction: str = INSTRUCTION) -> tuple[Message, ...]:
    """The chat both models continue: user = instruction + question, assistant = the pre-fill.

    ``problem.meta["history"]`` (a list of ``{"role", "content"}``, e.g. earlier turns of a chat the
    server routes) comes first, as context.
    """
    history = tuple(Message(m["role"], m["content"]) for m in problem.meta.get("history", ()))
    return (
        *history,
        Message("user", f"{instruction}\n\n{problem.text}"),
        Message("assistant", prefill(steps)),
    )


def step_request(
    problem: Problem,
    steps: Sequence[str],
    *,
    max_tokens: int,
    seed: int | None,
    logprobs: bool = False,
    instruction: str = INSTRUCTION,
) -> StepRequest:
    return StepRequest(
        messages=messages(problem, steps, instruction),
        max_tokens=max_tokens,
        seed=seed,
        stop=(SEPARATOR,),
        logprobs=logprobs,
    )


def is_final(text: str) -> bool:
    """A step that states the final answer ends the solution."""
    return "\\boxed{" in text


def is_degenerate(text: str) -> bool:
    """Empty, whitespace-only or punctuation-only output (e.g. ``---``) is not a step."""
    return all(c in _NON_CONTENT for c in text)


def extract_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` (balanced braces), or None."""
    start = text.rfind("\\boxed")
    while start != -1:
        i = start + len("\\boxed")
        if i < len(text) and text[i] == "{":
            depth, j = 0, i
            while j < len(text):
                if text[j] == "{":
                    depth += 1
                elif text[j] == "}":
                    depth -= 1
                    if depth == 0:
                        return text[i + 1 : j].strip()
                j += 1
        start = text.rfind("\\boxed", 0, start)
    return None


_ANSWER_IS = re.compile(r"answer is[:\s]*\$?([^\n$]+?)\$?\s*(?:\.|$)", re.IGNORECASE)
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def extract_answer(text: str) -> str | None:
    """The final answer of a solution: the last ``\\boxed{}``, else "the answer is X", else the last number."""
    boxed = extract_boxed(text)
    if boxed is not None:
        return boxed
    m = _ANSWER_IS.findall(text)
    if m:
        return m[-1].strip()
    nums = _NUMBER.findall(text)
    return nums[-1].replace(",", "") if nums else None


def render_chatml(msgs: Sequence[Message]) -> str:
    """ChatML (Qwen2.5, SmolLM2) with the last assistant message left open for continuation."""
    out = []
    for m in msgs[:-1]:
        out.append(f"<|im_start|>{m.role}\n{m.content}<|im_end|>\n")
    last = msgs[-1]
    out.append(f"<|im_start|>{last.role}\n{last.content}")
    return "".join(out)
