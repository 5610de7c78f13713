"""Qwen2.5-Math-PRM over vLLM's pooling API (the paper's step scorer, DESIGN.md §4).

The request is a chat: system = the run's instruction, user = the question, assistant = the steps, each
followed by ``<extra_0>``. vLLM runs the model's chat template and its step pooler (tag ``<extra_0>``,
id 151651), answering ``[P(wrong), P(right)]`` at each tag; the score is the second column.
Serve it with ``vllm serve Qwen/Qwen2.5-Math-PRM-7B --runner pooling`` (``--task reward`` before vLLM 0.10).

Options: ``prompt`` (the prompt format whose instruction is the system message: ``official``, like the
engine's default; set it to the run's ``engine.prompt``), ``system`` (an explicit system message instead),
``truncate_prompt_tokens``, ``backoff_s``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from trimroute import prompts
from trimroute.scorers.pooling import PoolingPRM
from trimroute.types import Problem, Step

__all__ = ["STEP_TAG", "QwenPRMScorer", "prm_system", "qwen_prm_messages"]

STEP_TAG = "<extra_0>"


def qwen_prm_messages(
    problem: Problem, steps: Sequence[Step], system: str = prompts.OFFICIAL.instruction
) -> list[dict[str, str]]:
    """The chat the Qwen2.5-Math-PRM scores (its model card's format)."""
    return [
        {"role": "system", "content": system},
        {"role": "user", "content": problem.text},
        {"role": "assistant", "content": "".join(_untagged(s.text) + STEP_TAG for s in steps)},
    ]


class QwenPRMScorer(PoolingPRM):
    """Qwen2.5-Math-PRM-7B/72B served by vLLM: one ``/pooling`` call scores the whole history."""

    name = "qwen-prm"
    positive_index = 1
    options = ("prompt", "system")

    def input(self, problem: Problem, steps: Sequence[Step]) -> dict[str, Any]:
        system = prm_system(self.config.options)
        return {"messages": qwen_prm_messages(problem, steps, system), "add_generation_prompt": False}


def prm_system(options: Mapping[str, Any]) -> str:
    """The PRM's system message: ``options.system``, else the instruction of ``options.prompt`` (a format name)."""
    if "system" in options:
        return str(options["system"])
    return prompts.prompt_format(str(options.get("prompt", prompts.DEFAULT))).instruction


def _untagged(text: str) -> str:
    """A step must not contain the tag itself, or it would get two scores."""
    return text.replace(STEP_TAG, "")
