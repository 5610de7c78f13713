"""Prompt formats, step rules and answer extraction, written once (DESIGN.md §4).

Both models continue exactly the same chat: a user message (the format's instruction and the question)
and an assistant turn pre-filled with the accepted steps, separated by ``"\\n\\n"``. Formats are chosen by
name (``EngineConfig.prompt``):

- ``official`` (default): the official TRIM release byte for byte: user = ``SYSTEM_PROMPT + "\\nQuestion: "
  + question``; pre-fill ``"Solution:\\n\\n"`` before the first step, ``"Solution: " + "\\n\\n".join(steps)
  + "\\n\\n"`` after. The simulator presets and calibration numbers were measured with it.
- ``trim-v0``: this project's first format (user = instruction + ``"\\n\\n"`` + question, pre-fill
  ``"Solution:\\n\\n"`` + each step + ``"\\n\\n"``); the CPU demo's published numbers were measured with it.
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence
from dataclasses import dataclass

from trimroute.errors import ConfigError
from trimroute.types import Message, Problem, StepRequest

SEPARATOR = "\n\n"


@dataclass(frozen=True)
class PromptFormat:
    """How a problem and its accepted steps become the chat both models continue."""

    name: str
    instruction: str
    question_prefix: str  # between the instruction and the question
    opening: str  # the pre-fill before the first step
    steps_header: str  # what precedes the accepted steps once there are some

    def user(self, question: str) -> str:
        return self.instruction + self.question_prefix + question

    def prefill(self, steps: Sequence[str]) -> str:
        """The assistant pre-fill for a solution whose accepted steps are ``steps``."""
        return self.steps_header + SEPARATOR.join(steps) + SEPARATOR if steps else self.opening


# a plain string in the official code: the doubled braces are literally in the prompt
OFFICIAL = PromptFormat(
    name="official",
    instruction="Solve the following math problem step by step, given in LaTeX format, clearly and concisely, "
    "and present the final answer as \\boxed{{X}}, where X is the fully simplified solution.",
    question_prefix="\nQuestion: ",
    opening="Solution:\n\n",
    steps_header="Solution: ",
)
TRIM_V0 = PromptFormat(
    name="trim-v0",
    instruction="Solve the following math problem step by step. Separate the steps with a blank line "
    "and put your final answer within \\boxed{}.",
    question_prefix=SEPARATOR,
    opening="Solution:" + SEPARATOR,
    steps_header="Solution:" + SEPARATOR,
)
FORMATS = {f.name: f for f in (OFFICIAL, TRIM_V0)}
DEFAULT = OFFICIAL.name

_NON_CONTENT = set(string.punctuation + string.whitespace)


def prompt_format(name: str) -> PromptFormat:
    """The registered format called ``name``."""
    try:
        return FORMATS[name]
    except KeyError:
        raise ConfigError(f"unknown prompt format {name!r}; valid: {', '.join(FORMATS)}") from None


def messages(problem: Problem, steps: Sequence[str], prompt: PromptFormat = OFFICIAL) -> tuple[Message, ...]:
    """The chat both models continue: user = instruction + question, assistant = the pre-fill.

    ``problem.meta["history"]`` (a list of ``{"role", "content"}``, e.g. earlier turns of a chat the
    server routes) comes first, as context.
    """
    history = tuple(Message(m["role"], m["content"]) for m in problem.meta.get("history", ()))
    return (
        *history,
        Message("user", prompt.user(problem.text)),
        Message("assistant", prompt.prefill(steps)),
    )


def step_request(
    problem: Problem,
    steps: Sequence[str],
    *,
    max_tokens: int,
    seed: int | None,
    logprobs: bool = False,
    prompt: PromptFormat = OFFICIAL,
) -> StepRequest:
    return StepRequest(
        messages=messages(problem, steps, prompt),
        max_tokens=max_tokens,
        seed=seed,
        stop=(SEPARATOR,),
        logprobs=logprobs,
        n_steps=len(steps),
    )


def is_final(text: str) -> bool:
    """A step that states the final answer ends the solution (the official code also accepts ``boxed{``)."""
    return "boxed{" in text


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
