"""Backends over real HTTP against the llama.cpp server (SmolLM2): exact prefixes, usage, errors, the engine."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from trimroute import Engine, EngineConfig, prompts
from trimroute.config import BackendConfig, ScorerConfig
from trimroute.errors import BackendUnavailableError, ModelNotFoundError
from trimroute.generators.openai_compat import OpenAIGenerator
from trimroute.generators.templates import load_template
from trimroute.scorers.judge import JudgeScorer
from trimroute.testing.llama_server import LlamaServer
from trimroute.types import Action, Observation, Problem

pytestmark = pytest.mark.slow

PROBLEM = Problem("gsm-1", "Tom has 3 apples and buys 4 more. How many apples does he have now?", "7")


@dataclass(frozen=True)
class OddStepsBelow:
    """TRIM-Thr on odd step positions only: keeps the first step weak, then forces an escalation
    (every judge score is < 1), so a short solution has both weak and strong steps."""

    threshold: float
    fixed_action: Action | None = None
    needs_scores: bool = True
    name: str = "odd-thr"

    def decide(self, obs: Observation) -> Action:
        odd = obs.step_index % 2 == 1
        return Action.REGENERATE if odd and obs.score < self.threshold else Action.CONTINUE


class Recording(httpx.AsyncBaseTransport):
    """Forwards to the real server and keeps every request body and JSON answer."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.sent: list[bytes] = []
        self.answers: list[dict[str, Any]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if request.method == "POST":
            self.sent.append(request.content)
            body = await response.aread()
            self.answers.append(json.loads(body))
            return httpx.Response(response.status_code, headers=response.headers, content=body)
        return response

    def usage(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for a in self.answers:
            total.update({"calls": 1, **{k: a["usage"][k] for k in ("prompt_tokens", "completion_tokens")}})
        return total

    async def aclose(self) -> None:
        await self.inner.aclose()


def backend(server: LlamaServer, **kw: Any) -> BackendConfig:
    return BackendConfig(kind="openai", model=server.model, base_url=server.base_url, **kw)


def tokens(server: LlamaServer, text: str) -> int:
    root = server.base_url.removesuffix("/v1")
    return len(httpx.post(f"{root}/extras/tokenize", json={"input": text}, timeout=30).json()["tokens"])


async def test_completions_route_prefix_is_byte_exact_on_the_server(llama_server: LlamaServer) -> None:
    rec = Recording()
    gen = OpenAIGenerator(backend(llama_server), transport=rec)
    request = prompts.step_request(PROBLEM, ["Tom starts with 3 apples."], max_tokens=24, seed=1)
    out = await gen.generate_step(request)
    await gen.aclose()
    # the model's own template (SmolLM2's, from the GGUF), with its default system turn
    expected = load_template(llama_server.model).render(request.messages)  # the served name is the GGUF path
    assert expected.startswith("<|im_start|>system\nYou are a helpful AI assistant named SmolLM")
    assert expected.endswith("<|im_start|>assistant\nSolution: Tom starts with 3 apples.\n\n")
    assert json.loads(rec.sent[0])["prompt"] == expected
    # the server tokenised exactly that text, trailing separator included
    assert out.prompt_tokens == tokens(llama_server, expected) != tokens(llama_server, expected[:-2])
    assert out.generated_tokens == rec.answers[0]["usage"]["completion_tokens"] > 0


async def test_chat_route_sends_the_prefill_byte_exact(llama_server: LlamaServer) -> None:
    rec = Recording()
    gen = OpenAIGenerator(backend(llama_server, api="chat"), transport=rec)
    request = prompts.step_request(PROBLEM, ["Tom starts with 3 apples."], max_tokens=16, seed=1)
    out = await gen.generate_step(request)
    await gen.aclose()
    body = json.loads(rec.sent[0])
    assert body["messages"][-1]["content"] == "Solution: Tom starts with 3 apples.\n\n"
    assert b'Solution: Tom starts with 3 apples.\\n\\n"' in rec.sent[0]
    assert body["continue_final_message"] is True and body["add_generation_prompt"] is False
    assert out.generated_tokens == rec.answers[0]["usage"]["completion_tokens"]


async def test_wrong_model_and_a_stopped_server_give_clear_errors(llama_server: LlamaServer) -> None:
    request = prompts.step_request(PROBLEM, [], max_tokens=4, seed=0)
    wrong = OpenAIGenerator(BackendConfig(model="Qwen/Qwen2.5-1.5B-Instruct", base_url=llama_server.base_url))
    with pytest.raises(ModelNotFoundError, match=f"served: {llama_server.model}"):
        await wrong.generate_step(request)
    await wrong.aclose()
    gen = OpenAIGenerator(backend(llama_server, max_retries=1, options={"backoff_s": 0.0}))
    llama_server.stop()
    try:
        with pytest.raises(
            BackendUnavailableError, match=r"cannot reach http://127.0.0.1:\d+/v1/.* \(is the server running\?\)"
        ):
            await gen.generate_step(request)
    finally:
        llama_server.start()
    assert (await gen.generate_step(request)).generated_tokens > 0  # same port, back in service
    await gen.aclose()


async def test_engine_end_to_end_with_weak_strong_and_judge_over_http(llama_server: LlamaServer) -> None:
    weak_rec, strong_rec, judge_rec = Recording(), Recording(), Recording()
    weak = OpenAIGenerator(backend(llama_server, temperature=0.7), transport=weak_rec)
    strong = OpenAIGenerator(backend(llama_server, temperature=0.0), transport=strong_rec)
    judge = JudgeScorer(
        ScorerConfig(kind="judge", model=llama_server.model, base_url=llama_server.base_url), transport=judge_rec
    )
    # a seed whose first SmolLM2 step ends at a blank line, on a fresh server and after other requests (the
    # llama.cpp server reuses its prompt cache, which changes the numerics and so the sampled text)
    # speculate=False: a speculative weak step cancelled in flight may or may not reach the server, so the exact
    # per-role match below holds only for the sequential loop (speculation's accounting: tests/unit/test_speculation.py)
    engine = Engine(weak, strong, judge, EngineConfig(max_steps=3, max_step_tokens=128, seed=0, speculate=False))
    try:
        t = await engine.solve(PROBLEM, OddStepsBelow(1.0))
    finally:
        await engine.aclose()
    roles = {s.role for s in t.steps}
    assert roles == {"weak", "strong"}, [(s.role, s.text) for s in t.steps]
    assert all(s.score is not None and 0.0 <= s.score <= 1.0 for s in t.steps)
    for usage, rec in ((t.usage.weak, weak_rec), (t.usage.strong, strong_rec)):
        server = rec.usage()
        assert (usage.calls, usage.prompt_tokens, usage.generated_tokens) == (
            server["calls"],
            server["prompt_tokens"],
            server["completion_tokens"],
        )
    judged = judge_rec.usage()
    assert (t.usage.scorer.calls, t.usage.scorer.prompt_tokens, t.usage.scorer.generated_tokens) == (
        judged["calls"],
        judged["prompt_tokens"],
        judged["completion_tokens"],
    )
    assert t.usage.weak.discarded_tokens == sum(d.generated_tokens for d in t.discarded) > 0


async def test_speculative_weak_steps_over_http_are_counted_apart(llama_server: LlamaServer) -> None:
    weak_rec = Recording()
    weak = OpenAIGenerator(backend(llama_server, temperature=0.7), transport=weak_rec)
    strong = OpenAIGenerator(backend(llama_server, temperature=0.0))
    judge = JudgeScorer(ScorerConfig(kind="judge", model=llama_server.model, base_url=llama_server.base_url))
    engine = Engine(weak, strong, judge, EngineConfig(max_steps=3, max_step_tokens=128, seed=0, speculate=True))
    try:
        t = await engine.solve(PROBLEM, OddStepsBelow(1.0))
    finally:
        await engine.aclose()
    served = weak_rec.usage()["calls"]
    # every kept weak step was served; a thrown-away speculation was served unless it was cancelled before sending
    assert t.usage.weak.calls <= served <= t.usage.weak.calls + t.usage.speculative.calls


async def test_shadow_prefill_over_http_sends_the_regeneration_prompt_first(llama_server: LlamaServer) -> None:
    strong_rec = Recording()
    weak = OpenAIGenerator(backend(llama_server, temperature=0.7))
    strong = OpenAIGenerator(backend(llama_server, temperature=0.0), transport=strong_rec)
    judge = JudgeScorer(ScorerConfig(kind="judge", model=llama_server.model, base_url=llama_server.base_url))
    rules = EngineConfig(max_steps=3, max_step_tokens=128, seed=0, speculate=False, shadow_prefill=True)
    engine = Engine(weak, strong, judge, rules)
    try:
        t = await engine.solve(PROBLEM, OddStepsBelow(1.0))
    finally:
        await engine.aclose()
    bodies = [json.loads(b) for b in strong_rec.sent]
    prompt = [b.get("messages", b.get("prompt")) for b in bodies]  # chat, or the rendered chat template's text
    warmups = [(p, a) for p, b, a in zip(prompt, bodies, strong_rec.answers, strict=True) if b["max_tokens"] == 1]
    rewrites = [p for p, b in zip(prompt, bodies, strict=True) if b["max_tokens"] > 1]
    assert len(rewrites) == t.usage.strong.calls >= 1
    # every regeneration's prompt went out as a shadow prefill first (the last step's may be cut off in flight)
    assert all(messages in [w for w, _ in warmups] for messages in rewrites)
    served = sum(a["usage"]["prompt_tokens"] for _, a in warmups)
    assert len(warmups) <= t.usage.prefill.calls and t.usage.prefill.prompt_tokens <= served
