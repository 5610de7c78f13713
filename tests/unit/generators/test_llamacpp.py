"""The in-process llama.cpp generator on the real SmolLM2 model: finish reasons, token counts, KV reuse."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace

import pytest

from trimroute import prompts
from trimroute.config import BackendConfig
from trimroute.errors import ConfigError
from trimroute.generators import build_generator
from trimroute.generators.llamacpp import LlamaCppGenerator
from trimroute.generators.openai_compat import OpenAIGenerator
from trimroute.testing.llama_server import LlamaServer, smollm2_path
from trimroute.types import FinishReason, Message, Problem, StepRequest

pytestmark = pytest.mark.slow

PROBLEM = Problem("p", "Tom has 3 apples and buys 4 more. How many apples does he have?")


def config(**kw: object) -> BackendConfig:
    options = {"model_path": str(smollm2_path()), "n_ctx": 2048, "n_threads": 2, **kw.pop("options", {})}  # type: ignore[dict-item]
    kw.setdefault("temperature", 0.0)
    return BackendConfig(kind="llamacpp", options=options, **kw)  # type: ignore[arg-type]


@pytest.fixture
async def gen() -> AsyncIterator[LlamaCppGenerator]:
    g = build_generator(config())
    assert isinstance(g, LlamaCppGenerator)
    yield g
    await g.aclose()


def ask(question: str, prefill: str, max_tokens: int = 60, **kw: object) -> StepRequest:
    return StepRequest(messages=(Message("user", question), Message("assistant", prefill)), max_tokens=max_tokens, **kw)  # type: ignore[arg-type]


async def test_stop_eos_and_length_are_told_apart(gen: LlamaCppGenerator) -> None:
    stop = await gen.generate_step(ask("What is 1 + 1?", "Solution:\n\n"))
    assert stop.finish_reason is FinishReason.STOP and stop.text and "\n\n" not in stop.text
    # without the stop string the same greedy continuation goes on past a blank line
    free = await gen.generate_step(replace(ask("What is 1 + 1?", "Solution:\n\n"), stop=()))
    assert free.text.startswith(stop.text + "\n\n")
    eos = await gen.generate_step(ask("Reply with one word: is 2 + 2 = 4? yes or no", ""))
    assert eos.finish_reason is FinishReason.EOS and eos.generated_tokens < 60
    length = await gen.generate_step(ask("What is 1 + 1?", "Solution:\n\n", max_tokens=2))
    assert length.finish_reason is FinishReason.LENGTH and length.generated_tokens == 2


async def test_kv_cache_is_reused_across_the_steps_of_a_problem(gen: LlamaCppGenerator) -> None:
    steps: list[str] = []
    previous = None
    for i in range(3):
        out = await gen.generate_step(prompts.step_request(PROBLEM, steps, max_tokens=80, seed=i))
        if previous is not None:
            # the previous prompt and its step stay cached; only the tokens at the separator, which
            # re-tokenising the text may split differently from sampling, are evaluated again. The official
            # pre-fill turns "Solution:\n\n" into "Solution: " once there are steps, so the first step's
            # prompt is reused only up to "Solution:"
            first = i == 1
            reused = previous.prompt_tokens - 2 if first else previous.prompt_tokens + previous.generated_tokens - 2
            assert gen.reused_tokens >= reused
            assert out.prompt_tokens > previous.prompt_tokens
        if out.finish_reason is not FinishReason.STOP:
            break
        steps.append(out.text)
        previous = out
    assert previous is not None, "the model never produced a second step"


async def test_seeded_sampling_is_reproducible_from_a_fresh_model() -> None:
    request = prompts.step_request(PROBLEM, [], max_tokens=12, seed=11)
    texts = []
    for _ in range(2):
        g = build_generator(config(temperature=0.9))
        try:
            texts.append((await g.generate_step(request)).text)
        finally:
            await g.aclose()
    assert texts[0] == texts[1]


async def test_renders_and_counts_the_prompt_like_the_completions_route(llama_server: LlamaServer) -> None:
    request = prompts.step_request(PROBLEM, ["Tom starts with 3 apples."], max_tokens=4, seed=0)
    http = OpenAIGenerator(BackendConfig(model=llama_server.model, base_url=llama_server.base_url, temperature=0.0))
    local = build_generator(config())
    try:
        _, body = http.payload(request, await http.chat_template())
        assert isinstance(local, LlamaCppGenerator)
        assert local.template.render(request.messages) == body["prompt"]
        remote_out, local_out = await http.generate_step(request), await local.generate_step(request)
        assert local_out.prompt_tokens == remote_out.prompt_tokens
        assert local_out.generated_tokens == remote_out.generated_tokens == 4
    finally:
        await http.aclose()
        await local.aclose()


async def test_logprobs_need_logits_all() -> None:
    g = build_generator(config())
    request = prompts.step_request(PROBLEM, [], max_tokens=5, seed=0, logprobs=True)
    try:
        with pytest.raises(ConfigError, match="logits_all: true"):
            await g.generate_step(request)
    finally:
        await g.aclose()
    g = build_generator(config(options={"logits_all": True}))
    try:
        out = await g.generate_step(request)
        assert out.token_logprobs is not None and len(out.token_logprobs) == out.generated_tokens
        assert all(lp <= 0.0 for lp in out.token_logprobs)
    finally:
        await g.aclose()


def test_bad_options_are_rejected() -> None:
    with pytest.raises(ConfigError, match="options.model_path must name a GGUF file"):
        LlamaCppGenerator(BackendConfig(kind="llamacpp", options={"model_path": "/nope.gguf"}))
    with pytest.raises(ConfigError, match="unknown option 'ctx'"):
        LlamaCppGenerator(BackendConfig(kind="llamacpp", options={"model_path": "x", "ctx": 1}))
