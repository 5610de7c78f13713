"""Several replicas behind one backend: config, spreading with affinity, failover counted once, probes.

Replicas are ``httpx.MockTransport`` hosts; a dead one raises the connection error a closed port gives.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter

import httpx
import pytest

from trimroute import prompts
from trimroute.config import (
    BackendConfig,
    RunConfig,
    ScorerConfig,
    from_dict,
    identity,
    load_run_config,
    parse_override,
)
from trimroute.errors import BackendUnavailableError, ConfigError, ModelNotFoundError
from trimroute.generators.openai_compat import OpenAIGenerator
from trimroute.scorers.judge import JudgeScorer
from trimroute.types import Problem, Step, StepRequest

URLS = ("http://r0:8000/v1", "http://r1:8000/v1")
P1, P2 = Problem("p1", "What is 2 + 3?"), Problem("p2", "What is 7 * 6?")


class Fleet:
    """Mock replicas: each answers /models and completions with its own usage; ``dead`` ones refuse to connect."""

    def __init__(self, model: str = "m") -> None:
        self.model = model
        self.dead: set[str] = set()
        self.posts: list[tuple[str, dict]] = []  # (host, body) of every completion a live replica answered

    def __call__(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        if host in self.dead:
            raise httpx.ConnectError("[Errno 111] Connection refused", request=request)
        if request.url.path.endswith("/models"):
            return httpx.Response(200, json={"data": [{"id": self.model}]})
        self.posts.append((host, json.loads(request.content)))
        usage = {"prompt_tokens": 10 + int(host[1:]), "completion_tokens": 3}
        choice = {"text": f"from {host}", "finish_reason": "stop"}
        return httpx.Response(200, json={"choices": [choice], "usage": usage})

    def hosts(self) -> Counter[str]:
        return Counter(h for h, _ in self.posts)


def generator(fleet: Fleet, **options: object) -> OpenAIGenerator:
    config = BackendConfig(
        model="m", base_urls=URLS, chat_template="chatml", max_retries=1, options={"backoff_s": 0.0, **options}
    )
    return OpenAIGenerator(config, transport=httpx.MockTransport(fleet))


def step(problem: Problem, n: int) -> StepRequest:
    return prompts.step_request(problem, [f"Step {i}." for i in range(n)], max_tokens=8, seed=n)


def test_base_urls_are_where_fields_and_a_single_url_config_is_unchanged() -> None:
    one = BackendConfig(model="m", base_url=URLS[0])
    two = BackendConfig(model="m", base_urls=URLS)
    assert identity(one) == identity(two) and "base_urls" not in identity(two)
    assert one.urls == (URLS[0],) and two.urls == URLS and BackendConfig().urls == ()
    overrides = dict(parse_override(f"{role}.base_urls=[{URLS[0]},{URLS[1]}]") for role in ("weak", "scorer"))
    loaded = load_run_config(overrides=overrides)  # as --set gives them
    assert loaded.weak.base_urls == URLS and loaded.scorer.urls == URLS  # a YAML list becomes a tuple


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"base_urls": []}, "base_urls is empty: list the replicas' URLs, or give one base_url"),
        ({"base_urls": "http://a/v1"}, "base_urls must be a list of URLs"),
        ({"base_urls": ["http://a/v1", "a:8000/v1"]}, "base_urls entries must start with http:// or https://, got 'a:"),
        ({"base_urls": ["http://a/v1", "http://a/v1"]}, "base_urls lists 'http://a/v1' twice"),
        ({"base_urls": ["http://a/v1"], "base_url": "http://b/v1"}, "give base_url or base_urls, not both"),
        ({"base_url": ["http://a/v1", "http://b/v1"]}, "base_url takes one URL, .* list replicas under base_urls"),
    ],
)
def test_bad_replica_lists_give_one_line_errors(section: dict, message: str) -> None:
    for role in ("weak", "scorer"):
        with pytest.raises(ConfigError, match=message):
            from_dict(RunConfig, {role: section})


async def test_each_problem_stays_on_one_replica_and_problems_are_spread() -> None:
    fleet = Fleet()
    gen = generator(fleet)
    for n in range(3):  # the steps of two problems, interleaved as the engine would send them
        await gen.generate_step(step(P1, n))
        await gen.generate_step(step(P2, n))
    await gen.aclose()
    by_problem: dict[str, set[str]] = {}
    for host, body in fleet.posts:
        by_problem.setdefault("2 + 3" if "2 + 3" in body["prompt"] else "7 * 6", set()).add(host)
    assert sorted(map(sorted, by_problem.values())) == [["r0"], ["r1"]]


async def test_without_affinity_a_problem_follows_the_load() -> None:
    fleet = Fleet()
    gen = generator(fleet, affinity=False)
    for n in range(4):
        await gen.generate_step(step(P1, n))
    await gen.aclose()
    assert fleet.hosts() == Counter({"r0": 2, "r1": 2})


async def test_a_dead_replica_hands_the_request_over_and_usage_is_the_answer_used() -> None:
    fleet = Fleet()
    gen = generator(fleet)
    first = await gen.generate_step(step(P1, 0))
    home = fleet.posts[0][0]
    fleet.dead.add(home)
    out = await gen.generate_step(step(P1, 1))  # max_retries=1, yet no attempt is spent on the handover
    other = ({"r0", "r1"} - {home}).pop()
    assert out.text == f"from {other}" and out.prompt_tokens == 10 + int(other[1:]) and out.generated_tokens == 3
    assert first.text == f"from {home}" and fleet.hosts() == Counter({home: 1, other: 1})
    assert [r.healthy for r in gen.endpoint.replicas.all] == [home != "r0", home != "r1"]
    await gen.aclose()


async def test_a_replica_that_comes_back_is_probed_back_in() -> None:
    fleet = Fleet()
    gen = generator(fleet)
    await gen.generate_step(step(P1, 0))
    home = fleet.posts[0][0]
    fleet.dead.add(home)
    await gen.generate_step(step(P1, 1))
    fleet.dead.clear()
    replicas = gen.endpoint.replicas
    await gen.generate_step(step(P2, 0))  # backoff_s=0: the probe is due and starts in the background
    assert fleet.posts[-1][0] != home and any(r.probing for r in replicas.all)
    for _ in range(100):  # let the probe run (the mock transport answers without I/O)
        if not any(r.probing for r in replicas.all):
            break
        await asyncio.sleep(0)
    assert all(r.healthy for r in replicas.all)
    await gen.generate_step(step(Problem("p3", "What is 1 + 1?"), 0))
    assert fleet.posts[-1][0] == home  # a new problem goes to the replica that came back
    await gen.aclose()


async def test_every_replica_dead_fails_after_the_retries_with_the_usual_message() -> None:
    fleet = Fleet()
    fleet.dead = {"r0", "r1"}
    gen = generator(fleet)
    with pytest.raises(BackendUnavailableError, match=r"cannot reach http://r\d:8000/v1/models .*gave up after 2 "):
        await gen.generate_step(step(P1, 0))
    await gen.aclose()
    assert fleet.posts == []


async def test_a_replica_serving_another_model_is_named() -> None:
    good, wrong = Fleet(), Fleet(model="other")

    def route(request: httpx.Request) -> httpx.Response:
        return (good if request.url.host == "r0" else wrong)(request)

    config = BackendConfig(model="m", base_urls=URLS, chat_template="chatml", options={"backoff_s": 0.0})
    gen = OpenAIGenerator(config, transport=httpx.MockTransport(route))
    await gen.generate_step(step(P1, 0))  # r0
    with pytest.raises(ModelNotFoundError, match=r"http://r1:8000/v1 does not serve model 'm'; served: other"):
        await gen.generate_step(step(P2, 0))  # r1
    await gen.aclose()


async def test_the_judge_keeps_one_problem_on_one_replica() -> None:
    calls: list[str] = []

    def judge(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/models"):
            return httpx.Response(200, json={"data": [{"id": "j"}]})
        calls.append(request.url.host)
        top = {"Yes": -0.1, "No": -2.5}
        return httpx.Response(200, json={"choices": [{"logprobs": {"top_logprobs": [top]}}], "usage": {}})

    config = ScorerConfig(kind="judge", model="j", base_urls=URLS, options={"backoff_s": 0.0})
    scorer = JudgeScorer(config, transport=httpx.MockTransport(judge))
    steps: list[Step] = []
    for i in range(3):
        steps.append(Step(text=f"Step {i}.", role="weak", generated_tokens=2))
        await scorer.score(P1, steps)
        await scorer.score(P2, steps)
    await scorer.aclose()
    assert calls[0::2] == [calls[0]] * 3 and calls[1::2] == [calls[1]] * 3 and calls[0] != calls[1]
