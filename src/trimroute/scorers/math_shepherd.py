"""Math-Shepherd PRM over vLLM's pooling API (DESIGN.md §4).

The input is plain text in Math-Shepherd's training format: the question, a space, then the steps as
``"Step i: <text> ки"`` joined by newlines. The model is a causal LM; vLLM's step pooler keeps, at each
``ки`` token, the softmax over the logits of ``+`` and ``-`` only, so a row is ``[P(+), P(-)]`` and the
score is its first column. Serve it with the tag and class token ids of its tokenizer, e.g. for
``peiyi9979/math-shepherd-mistral-7b-prm``::

    vllm serve peiyi9979/math-shepherd-mistral-7b-prm --runner pooling \\
        --pooler-config '{"pooling_type": "STEP", "step_tag_id": 12902, "returned_token_ids": [648, 387]}'

(``--override-pooler-config`` on older vLLM). Options: ``truncate_prompt_tokens``, ``backoff_s``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from trimroute.scorers.pooling import PoolingPRM
from trimroute.types import Problem, Step

__all__ = ["STEP_TAG", "MathShepherdScorer", "math_shepherd_text"]

STEP_TAG = "ки"


def math_shepherd_text(problem: Problem, steps: Sequence[Step]) -> str:
    """The text Math-Shepherd scores: question, then ``Step i: ... ки`` lines."""
    body = "\n".join(f"Step {i}: {_untagged(s.text)} {STEP_TAG}" for i, s in enumerate(steps, 1))
    return f"{problem.text} {body}"


class MathShepherdScorer(PoolingPRM):
    """Math-Shepherd served by vLLM's step pooler: one ``/pooling`` call scores the whole history."""

    name = "math-shepherd"
    positive_index = 0

    def input(self, problem: Problem, steps: Sequence[Step]) -> dict[str, Any]:
        return {"input": math_shepherd_text(problem, steps)}


def _untagged(text: str) -> str:
    """A step must not contain the tag itself, or it would get two scores."""
    return text.replace(STEP_TAG, "")
