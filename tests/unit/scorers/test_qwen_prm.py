"""Qwen2.5-Math-PRM client against an in-process server speaking vLLM's /pooling wire format."""

from __future__ import annotations

import math
from typing import Any

import httpx
import pytest

from trimroute import prompts
from trimroute.config import ScorerConfig
from trimroute.errors import BackendRequestError, ConfigError, ModelNotFoundError, ScorerError
from trimroute.scorers import SCORERS, build_scorer
from trimroute.scorers.pooling import positive_probability
from trimroute.scorers.qwen_prm import QwenPRMScorer
from trimroute.testing.pooling import pooling_app
from trimroute.types import Problem, Step

MODEL = "Qwen/Qwen2.5-Math-PRM-7B"
PROBLEM = Problem("p", "What is 2 + 3?")
STEPS = [Step("2 + 3 means adding 3 to 2.", "weak", 8), Step("wrong: 2 + 3 = 6.", "weak", 7)]


def scorer(requests: list[dict[str, Any]] | None = None, **kw: Any) -> QwenPRMScorer:
    app = pooling_app(
        MODEL, "<extra_0>", 1, requests=requests, logits=kw.pop("logits", False), max_model_len=kw.pop("context", None)
    )
    options = {"backoff_s": 0.0, **kw.pop("options", {})}
    config = ScorerConfig(kind="qwen-prm", model=kw.pop("model", MODEL), base_url="http://prm:8002/v1", options=options)
    return QwenPRMScorer(config, transport=httpx.ASGITransport(app=app))


async def test_request_follows_the_model_card_format() -> None:
    requests: list[dict[str, Any]] = []
    s = scorer(requests)
    result = await s.score(PROBLEM, STEPS)
    (body,) = requests
    assert body["model"] == MODEL and body["add_generation_prompt"] is False and body["use_activation"] is True
    assert body["messages"] == [
        {"role": "system", "content": prompts.OFFICIAL.instruction},
        {"role": "user", "content": "What is 2 + 3?"},
        {"role": "assistant", "content": "2 + 3 means adding 3 to 2.<extra_0>wrong: 2 + 3 = 6.<extra_0>"},
    ]
    assert result.values == pytest.approx((0.9, 0.1))
    assert result.calls == 1 and result.prompt_tokens > 0
    await s.aclose()


async def test_logits_are_softmaxed_and_the_positive_column_is_used() -> None:
    result = await scorer(logits=True).score(PROBLEM, STEPS)
    assert result.values == pytest.approx((0.9, 0.1))
    assert positive_probability([0.0, math.log(3.0)], 1) == pytest.approx(0.75)
    assert positive_probability([0.25, 0.75], 1) == 0.75


async def test_left_truncation_scores_the_missing_leading_steps_one() -> None:
    requests: list[dict[str, Any]] = []
    steps = [Step(f"step {i} is fine.", "weak", 4) for i in range(5)] + [Step("wrong step.", "weak", 2)]
    s = scorer(requests, options={"truncate_prompt_tokens": 8})
    result = await s.score(PROBLEM, steps)
    assert requests[0]["truncate_prompt_tokens"] == 8
    assert len(result.values) == 6 and result.values[-1] == pytest.approx(0.1)
    assert result.values[0] == 1.0 and result.prompt_tokens == 8


async def test_a_history_longer_than_the_context_is_cut_at_the_served_max_model_len() -> None:
    requests: list[dict[str, Any]] = []
    steps = [Step(f"step {i} is fine.", "weak", 4) for i in range(40)] + [Step("wrong step.", "weak", 2)]
    result = await scorer(requests, context=50).score(PROBLEM, steps)
    assert requests[0]["truncate_prompt_tokens"] == 50  # read from /v1/models
    kept = sum(v != 1.0 for v in result.values)  # steps whose tag survived the cut
    assert 1 < kept < 41 and result.values[: 41 - kept] == (1.0,) * (41 - kept)
    assert result.values[41 - kept :] == pytest.approx((0.9,) * (kept - 1) + (0.1,))
    # truncation off: the server rejects the long prompt, a clear error
    with pytest.raises(BackendRequestError, match="maximum context length is 50"):
        await scorer(context=50, options={"truncate_prompt_tokens": False}).score(PROBLEM, steps)
    with pytest.raises(ConfigError, match="truncate_prompt_tokens must be 'auto'"):
        scorer(options={"truncate_prompt_tokens": "yes"})


async def test_the_system_message_is_the_instruction_of_the_named_prompt_format() -> None:
    requests: list[dict[str, Any]] = []
    await scorer(requests, options={"prompt": "trim-v0"}).score(PROBLEM, STEPS)
    assert requests[0]["messages"][0] == {"role": "system", "content": prompts.TRIM_V0.instruction}
    with pytest.raises(ConfigError, match="unknown prompt format"):
        await scorer(options={"prompt": "nope"}).score(PROBLEM, STEPS)


async def test_a_step_containing_the_tag_still_gets_one_score() -> None:
    result = await scorer().score(PROBLEM, [Step("a<extra_0>b", "weak", 3)])
    assert len(result.values) == 1


async def test_more_scores_than_steps_is_a_scorer_error() -> None:
    app = pooling_app(MODEL, "<extra_0>", 1)
    config = ScorerConfig(kind="qwen-prm", model=MODEL, base_url="http://prm:8002", options={"system": "<extra_0>"})
    s = QwenPRMScorer(config, transport=httpx.ASGITransport(app=app))
    with pytest.raises(ScorerError, match="got 2 step scores for 1 steps"):
        await s.score(PROBLEM, STEPS[:1])


async def test_wrong_model_lists_the_served_one() -> None:
    with pytest.raises(ModelNotFoundError, match=f"does not serve model 'Qwen/nope'; served: {MODEL}"):
        await scorer(model="Qwen/nope").score(PROBLEM, STEPS)


def test_registered_and_rejects_unknown_options() -> None:
    assert "qwen-prm" in SCORERS
    with pytest.raises(ConfigError, match="unknown option 'tag' for a qwen-prm scorer"):
        build_scorer(ScorerConfig(kind="qwen-prm", model=MODEL, base_url="http://x", options={"tag": "x"}))
    with pytest.raises(ConfigError, match="model is required"):
        build_scorer(ScorerConfig(kind="qwen-prm", base_url="http://x"))
