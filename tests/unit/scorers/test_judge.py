"""The LLM-as-judge scorer: request format, P(yes)/(P(yes)+P(no)), per-step cache and usage."""

from __future__ import annotations

import json
import math

import httpx
import pytest

from trimroute import prompts
from trimroute.config import ScorerConfig
from trimroute.errors import ConfigError, ScorerError
from trimroute.scorers import build_scorer
from trimroute.scorers.judge import JudgeScorer, judge_messages, yes_probability
from trimroute.types import Problem, Step

PROBLEM = Problem("p", "What is 2 + 3?")
STEPS = [Step("2 + 3 = 5.", "weak", 6), Step("wrong: so \\boxed{6}.", "weak", 7)]


def answer(request: httpx.Request) -> httpx.Response:
    """A server whose judge says yes (p=0.8) unless the newest step contains "wrong" (p=0.2)."""
    if request.url.path.endswith("/models"):
        return httpx.Response(200, json={"data": [{"id": "judge"}]})
    body = json.loads(request.content)
    text = body.get("prompt") or body["messages"][-1]["content"]
    newest = text.split("Newest step:\n")[1]
    p_yes = 0.2 if "wrong" in newest else 0.8
    top = {"Yes": math.log(p_yes * 0.9), " yes": math.log(p_yes * 0.1), "No": math.log(1 - p_yes), "Maybe": -5.0}
    usage = {"prompt_tokens": 50, "completion_tokens": 1, "total_tokens": 51}
    if "prompt" in body:
        return httpx.Response(
            200, json={"choices": [{"text": "Yes", "logprobs": {"top_logprobs": [top]}}], "usage": usage}
        )
    content = [
        {"token": "Yes", "logprob": top["Yes"], "top_logprobs": [{"token": t, "logprob": lp} for t, lp in top.items()]}
    ]
    return httpx.Response(
        200, json={"choices": [{"message": {"content": "Yes"}, "logprobs": {"content": content}}], "usage": usage}
    )


def judge(recorded: list[httpx.Request], **options: object) -> JudgeScorer:
    def handler(request: httpx.Request) -> httpx.Response:
        recorded.append(request)
        return answer(request)

    config = ScorerConfig(
        kind="judge", model="judge", base_url="http://judge/v1", options={"backoff_s": 0.0, **options}
    )
    return JudgeScorer(config, transport=httpx.MockTransport(handler))


def test_yes_probability() -> None:
    assert yes_probability({"Yes": math.log(0.3), " no": math.log(0.1), "maybe": math.log(0.6)}) == pytest.approx(0.75)
    assert yes_probability({"Maybe": -0.1}) == 0.5


@pytest.mark.parametrize("api", ["completions", "chat"])
async def test_scores_each_step_once_and_counts_its_usage(api: str) -> None:
    recorded: list[httpx.Request] = []
    s = judge(recorded, api=api)
    first = await s.score(PROBLEM, STEPS[:1])
    assert first.values == pytest.approx((0.8,)) and first.calls == 1
    both = await s.score(PROBLEM, STEPS)
    assert both.values == pytest.approx((0.8, 0.2))
    # the first step's score came from the cache: one call, its tokens only
    assert (both.calls, both.prompt_tokens, both.generated_tokens) == (1, 50, 1)
    again = await s.score(PROBLEM, STEPS)
    assert again.calls == 0 and again.prompt_tokens == 0 and again.values == both.values
    bodies = [json.loads(r.content) for r in recorded if r.method == "POST"]
    assert len(bodies) == 2 and all(b["max_tokens"] == 1 and b["temperature"] == 0.0 for b in bodies)
    if api == "completions":
        assert bodies[1]["prompt"] == prompts.render_chatml(judge_messages(PROBLEM, STEPS))
        assert bodies[1]["prompt"].endswith("Answer Yes or No.<|im_end|>\n<|im_start|>assistant\n")
        assert bodies[1]["logprobs"] == 20
    else:
        assert bodies[1]["messages"][-1]["role"] == "user" and bodies[1]["top_logprobs"] == 20
    await s.aclose()


async def test_a_rewritten_step_is_judged_again() -> None:
    recorded: list[httpx.Request] = []
    s = judge(recorded)
    await s.score(PROBLEM, STEPS)
    fixed = await s.score(PROBLEM, [STEPS[0], Step("2 + 3 = 5, so \\boxed{5}.", "strong", 9)])
    assert fixed.calls == 1 and fixed.values == pytest.approx((0.8, 0.8))


async def test_cache_is_bounded() -> None:
    recorded: list[httpx.Request] = []
    s = judge(recorded, cache_size=1)
    result = await s.score(PROBLEM, STEPS)
    assert result.values == pytest.approx((0.8, 0.2)) and result.calls == 2
    assert (await s.score(PROBLEM, STEPS)).calls == 1  # only the newest score was kept


async def test_a_server_without_logprobs_is_a_clear_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/models"):
            return httpx.Response(200, json={"data": [{"id": "judge"}]})
        return httpx.Response(200, json={"choices": [{"text": "Yes", "logprobs": None}], "usage": {}})

    s = JudgeScorer(
        ScorerConfig(kind="judge", model="judge", base_url="http://j/v1"), transport=httpx.MockTransport(handler)
    )
    with pytest.raises(ScorerError, match="answered without top logprobs"):
        await s.score(PROBLEM, STEPS[:1])


def test_bad_options() -> None:
    with pytest.raises(ConfigError, match="api must be 'completions' or 'chat'"):
        build_scorer(ScorerConfig(kind="judge", model="m", base_url="http://x/v1", options={"api": "rest"}))
    with pytest.raises(ConfigError, match="unknown option 'k'"):
        build_scorer(ScorerConfig(kind="judge", model="m", base_url="http://x/v1", options={"k": 1}))
