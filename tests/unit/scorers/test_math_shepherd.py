"""Math-Shepherd client against an in-process server speaking vLLM's /pooling wire format."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from trimroute.config import ScorerConfig
from trimroute.scorers import build_scorer
from trimroute.scorers.math_shepherd import MathShepherdScorer, math_shepherd_text
from trimroute.testing.pooling import pooling_app
from trimroute.types import Problem, Step

MODEL = "math-shepherd-mistral-7b-prm"
PROBLEM = Problem("p", "What is 2 + 3?")
STEPS = [Step("2 + 3 = 5.", "weak", 6), Step("wrong, so the answer is \\boxed{6}.", "weak", 9)]


def test_text_uses_the_training_format() -> None:
    assert math_shepherd_text(PROBLEM, STEPS) == (
        "What is 2 + 3? Step 1: 2 + 3 = 5. ки\nStep 2: wrong, so the answer is \\boxed{6}. ки"
    )
    assert math_shepherd_text(PROBLEM, [Step("a ки b", "weak", 3)]).count("ки") == 1


@pytest.mark.parametrize("logits", [False, True])
async def test_score_is_the_plus_column_at_each_tag(logits: bool) -> None:
    requests: list[dict[str, Any]] = []
    app = pooling_app(MODEL, "ки", 0, requests=requests, logits=logits)
    config = ScorerConfig(kind="math-shepherd", model=MODEL, base_url="http://prm:8003")
    s = MathShepherdScorer(config, transport=httpx.ASGITransport(app=app))
    result = await s.score(PROBLEM, STEPS)
    assert requests[0]["input"] == math_shepherd_text(PROBLEM, STEPS) and "messages" not in requests[0]
    assert result.values == pytest.approx((0.9, 0.1))
    await s.aclose()


def test_registered() -> None:
    s = build_scorer(ScorerConfig(kind="math-shepherd", model=MODEL, base_url="http://prm:8003"))
    assert isinstance(s, MathShepherdScorer) and s.positive_index == 0
