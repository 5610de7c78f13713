"""The OpenAI-compatible generator: wire format of both routes, finish reasons, retries and errors.

Requests go through ``httpx.MockTransport`` (which sees the exact bytes sent); unreachable and hanging
endpoints are real sockets.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from trimroute import prompts
from trimroute.config import BackendConfig
from trimroute.errors import (
    BackendError,
    BackendRequestError,
    BackendTimeoutError,
    BackendUnavailableError,
    ConfigError,
    ModelNotFoundError,
)
from trimroute.generators import GENERATORS, build_generator
from trimroute.generators.openai_compat import OpenAIGenerator, finish_reason
from trimroute.testing.llama_server import free_port
from trimroute.types import FinishReason, Problem

PROBLEM = Problem("p", "What is 2 + 3?")
REQUEST = prompts.step_request(PROBLEM, ["First, 2 + 3 = 5."], max_tokens=64, seed=7)
MODELS = {"object": "list", "data": [{"id": "weak-model", "object": "model"}]}

Handler = Callable[[httpx.Request], httpx.Response]


def completion(text: str = "So the answer is 5.", finish: str = "stop", **extra: object) -> dict:
    return {
        "choices": [{"index": 0, "text": text, "finish_reason": finish, **extra}],
        "usage": {"prompt_tokens": 41, "completion_tokens": 9, "total_tokens": 50},
    }


def chat(text: str = "So the answer is 5.", finish: str = "stop") -> dict:
    return {
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}],
        "usage": {"prompt_tokens": 41, "completion_tokens": 9, "total_tokens": 50},
    }


class Recorder:
    """A mock server: answers /models and hands other requests to ``answer``; records every request."""

    def __init__(self, answer: Handler) -> None:
        self.answer = answer
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/models"):
            return httpx.Response(200, json=MODELS)
        self.requests.append(request)
        return self.answer(request)

    @property
    def bodies(self) -> list[dict]:
        return [json.loads(r.content) for r in self.requests]


def generator(answer: Handler, **cfg: object) -> tuple[OpenAIGenerator, Recorder]:
    rec = Recorder(answer)
    options = {"backoff_s": 0.0, **cfg.pop("options", {})}  # type: ignore[dict-item]
    cfg.setdefault("chat_template", "chatml")
    config = BackendConfig(kind="openai", model="weak-model", base_url="http://test/v1", options=options, **cfg)  # type: ignore[arg-type]
    return OpenAIGenerator(config, transport=httpx.MockTransport(rec)), rec


async def test_completions_route_sends_the_locally_rendered_prefix_byte_exact() -> None:
    gen, rec = generator(lambda r: httpx.Response(200, json=completion()))
    out = await gen.generate_step(REQUEST)
    (req,) = rec.requests
    assert req.url.path == "/v1/completions"
    body = json.loads(req.content)
    assert body["prompt"] == prompts.render_chatml(REQUEST.messages)
    assert body["prompt"].endswith("<|im_start|>assistant\nSolution: First, 2 + 3 = 5.\n\n")
    # the raw bytes on the wire carry the trailing separator too
    assert b'First, 2 + 3 = 5.\\n\\n"' in req.content
    assert body["stop"] == ["\n\n"] and body["max_tokens"] == 64 and body["seed"] == 7
    assert (body["temperature"], body["top_p"], body["top_k"]) == (0.7, 0.8, 20)
    assert "logprobs" not in body
    assert out.text == "So the answer is 5." and out.finish_reason is FinishReason.STOP
    assert (out.prompt_tokens, out.generated_tokens) == (41, 9)


async def test_chat_route_prefills_the_assistant_turn() -> None:
    gen, rec = generator(lambda r: httpx.Response(200, json=chat()), api="chat")
    out = await gen.generate_step(REQUEST)
    (body,) = rec.bodies
    assert rec.requests[0].url.path == "/v1/chat/completions"
    assert body["messages"][-1] == {"role": "assistant", "content": "Solution: First, 2 + 3 = 5.\n\n"}
    assert body["messages"][0]["role"] == "user" and body["messages"][0]["content"].endswith(PROBLEM.text)
    assert body["continue_final_message"] is True and body["add_generation_prompt"] is False
    assert out.text == "So the answer is 5." and out.generated_tokens == 9


async def test_logprobs_are_requested_and_returned_on_both_routes() -> None:
    def answer_completions(r: httpx.Request) -> httpx.Response:
        data = completion()
        data["choices"][0]["logprobs"] = {"tokens": ["So", " the"], "token_logprobs": [-0.5, -0.25]}
        return httpx.Response(200, json=data)

    def answer_chat(r: httpx.Request) -> httpx.Response:
        data = chat()
        data["choices"][0]["logprobs"] = {
            "content": [{"token": "So", "logprob": -0.5}, {"token": " x", "logprob": -1.0}]
        }
        return httpx.Response(200, json=data)

    request = prompts.step_request(PROBLEM, [], max_tokens=8, seed=None, logprobs=True)
    gen, rec = generator(answer_completions)
    out = await gen.generate_step(request)
    assert rec.bodies[0]["logprobs"] == 1 and "seed" not in rec.bodies[0]
    assert out.token_logprobs == (-0.5, -0.25)
    gen, rec = generator(answer_chat, api="chat")
    out = await gen.generate_step(request)
    assert rec.bodies[0]["logprobs"] is True
    assert out.token_logprobs == (-0.5, -1.0)


@pytest.mark.parametrize(
    ("choice", "text", "expected"),
    [
        ({"finish_reason": "length"}, "abc", FinishReason.LENGTH),
        ({"finish_reason": "stop", "stop_reason": "\n\n"}, "abc", FinishReason.STOP),  # vLLM: stop string hit
        ({"finish_reason": "stop", "stop_reason": None}, "abc", FinishReason.EOS),  # vLLM: EOS
        ({"finish_reason": "stop", "stop_reason": 151645}, "abc", FinishReason.EOS),  # vLLM: stop token id
        ({"finish_reason": "stop", "matched_stop": "\n\n"}, "abc", FinishReason.STOP),  # SGLang
        ({"finish_reason": "stop", "matched_stop": 2}, "abc", FinishReason.EOS),
        ({"finish_reason": "stop"}, "abc", FinishReason.STOP),  # no detail: text means the separator
        ({"finish_reason": "stop"}, "", FinishReason.EOS),  # no detail, nothing more to say: ended
        ({"finish_reason": "eos_token"}, "abc", FinishReason.EOS),
    ],
)
def test_finish_reason_mapping(choice: dict, text: str, expected: FinishReason) -> None:
    assert finish_reason(choice, text) is expected


async def test_a_stop_string_left_in_the_text_is_removed() -> None:
    gen, _ = generator(lambda r: httpx.Response(200, json=completion("x = 5\n\n")))
    assert (await gen.generate_step(REQUEST)).text == "x = 5"


async def test_top_k_is_left_out_when_disabled_and_extra_body_is_merged() -> None:
    gen, rec = generator(
        lambda r: httpx.Response(200, json=completion()), top_k=0, options={"extra_body": {"min_p": 0.05}}
    )
    await gen.generate_step(REQUEST)
    assert "top_k" not in rec.bodies[0] and rec.bodies[0]["min_p"] == 0.05


async def test_retries_5xx_and_429_with_backoff_then_succeeds() -> None:
    answers = iter([httpx.Response(503, text="busy"), httpx.Response(429, headers={"Retry-After": "0"}, json={})])
    gen, rec = generator(lambda r: next(answers, httpx.Response(200, json=completion())))
    out = await gen.generate_step(REQUEST)
    assert len(rec.requests) == 3 and out.text == "So the answer is 5."


async def test_a_server_answering_500_gives_a_clear_error_after_the_retries() -> None:
    gen, rec = generator(
        lambda r: httpx.Response(500, json={"error": {"message": "CUDA out of memory"}}), max_retries=2
    )
    with pytest.raises(BackendUnavailableError, match=r"answered 500: CUDA out of memory \(gave up after 3 attempts\)"):
        await gen.generate_step(REQUEST)
    assert len(rec.requests) == 3


async def test_a_rejected_request_is_not_retried() -> None:
    gen, rec = generator(lambda r: httpx.Response(400, json={"error": {"message": "max_tokens too large"}}))
    with pytest.raises(BackendRequestError, match="rejected the request \\(400\\): max_tokens too large"):
        await gen.generate_step(REQUEST)
    assert len(rec.requests) == 1


async def test_wrong_model_name_lists_the_served_models() -> None:
    rec = Recorder(lambda r: httpx.Response(200, json=completion()))
    config = BackendConfig(
        model="Qwen/typo", base_url="http://test/v1", chat_template="chatml", options={"backoff_s": 0.0}
    )
    gen = OpenAIGenerator(config, transport=httpx.MockTransport(rec))
    with pytest.raises(ModelNotFoundError, match="does not serve model 'Qwen/typo'; served: weak-model"):
        await gen.generate_step(REQUEST)
    assert rec.requests == []


async def test_a_404_naming_the_model_maps_to_model_not_found() -> None:
    def handler(r: httpx.Request) -> httpx.Response:
        if r.url.path.endswith("/models"):
            return httpx.Response(404)  # no model list: the first check cannot tell
        return httpx.Response(404, json={"error": {"message": "The model `x` does not exist."}})

    config = BackendConfig(model="x", base_url="http://test/v1", chat_template="chatml", options={"backoff_s": 0.0})
    gen = OpenAIGenerator(config, transport=httpx.MockTransport(handler))
    with pytest.raises(ModelNotFoundError, match="does not serve model 'x'"):
        await gen.generate_step(REQUEST)


async def test_unreachable_endpoint_says_which_url_and_what_to_check() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    config = BackendConfig(model="m", base_url=url, chat_template="chatml", max_retries=1, options={"backoff_s": 0.0})
    gen = build_generator(config)
    with pytest.raises(BackendUnavailableError, match=rf"cannot reach {url}/models \(is the server running\?\)"):
        await gen.generate_step(REQUEST)
    await gen.aclose()


async def test_a_hanging_server_times_out_after_the_retries() -> None:
    hung = 0
    writers: list[asyncio.StreamWriter] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal hung
        writers.append(writer)
        while (await reader.readuntil(b"\r\n\r\n")).startswith(b"GET /v1/models"):
            body = json.dumps({"data": [{"id": "m"}]}).encode()
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n" % len(body))
            writer.write(body)
            await writer.drain()
        hung += 1  # a generation request: it never gets an answer
        await reader.read(100_000)

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    config = BackendConfig(
        model="m",
        base_url=f"http://127.0.0.1:{port}/v1",
        chat_template="chatml",
        timeout_s=0.3,
        max_retries=1,
        options={"backoff_s": 0.0},
    )
    gen = OpenAIGenerator(config)
    try:
        with pytest.raises(BackendTimeoutError, match=r"did not answer within 0.3s .*gave up after 2 attempts"):
            await gen.generate_step(REQUEST)
    finally:
        await gen.aclose()
        server.close()
        for w in writers:
            w.close()
        await server.wait_closed()
    assert hung == 2


async def test_api_key_comes_from_the_named_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_KEY", "sk-test")
    gen, rec = generator(lambda r: httpx.Response(200, json=completion()), api_key_env="MY_KEY")
    await gen.generate_step(REQUEST)
    assert rec.requests[0].headers["authorization"] == "Bearer sk-test"
    monkeypatch.delenv("MY_KEY")
    gen, rec = generator(lambda r: httpx.Response(200, json=completion()), api_key_env="MY_KEY")
    await gen.generate_step(REQUEST)
    assert "authorization" not in rec.requests[0].headers


async def test_an_answer_without_choices_is_a_backend_error() -> None:
    gen, _ = generator(lambda r: httpx.Response(200, json={"object": "error"}))
    with pytest.raises(BackendError, match="without the expected fields"):
        await gen.generate_step(REQUEST)


def test_bad_configuration_fails_fast() -> None:
    with pytest.raises(ConfigError, match="unknown option 'stop' for an openai backend"):
        OpenAIGenerator(BackendConfig(model="m", base_url="http://x/v1", options={"stop": ["\n"]}))
    with pytest.raises(ConfigError, match="model is required"):
        OpenAIGenerator(BackendConfig(base_url="http://x/v1"))
    with pytest.raises(ConfigError, match="base_url is required"):
        OpenAIGenerator(BackendConfig(model="m"))
    with pytest.raises(ConfigError, match="must start with http"):
        OpenAIGenerator(BackendConfig(model="m", base_url="localhost:8000"))
    assert "openai" in GENERATORS and "llamacpp" in GENERATORS


async def test_chat_template_kwargs_reach_the_template_on_both_routes(tmp_path: Path) -> None:
    """Qwen3's thinking-off switch: a template variable rendered here, or sent for the server to render."""
    template = tmp_path / "t.jinja"
    template.write_text(
        "{% if enable_thinking is defined and not enable_thinking %}[no-think]{% endif %}"
        "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}{% endfor %}"
    )
    kwargs = {"chat_template_kwargs": {"enable_thinking": False}}
    gen, rec = generator(lambda r: httpx.Response(200, json=completion()), chat_template=str(template), options=kwargs)
    await gen.generate_step(REQUEST)
    assert rec.bodies[0]["prompt"].startswith("[no-think]<user>")
    gen, rec = generator(lambda r: httpx.Response(200, json=chat()), api="chat", options=kwargs)
    await gen.generate_step(REQUEST)
    assert rec.bodies[0]["chat_template_kwargs"] == {"enable_thinking": False}


async def test_auto_finds_the_template_of_a_local_model_folder_or_the_server(tmp_path: Path) -> None:
    (tmp_path / "chat_template.jinja").write_text("{% for m in messages %}[{{ m['content'] }}]{% endfor %}")
    bodies: list[dict] = []

    def vllm(r: httpx.Request) -> httpx.Response:  # serving --model DIR: the model's name is the folder
        if r.url.path.endswith("/models"):
            return httpx.Response(200, json={"data": [{"id": str(tmp_path)}]})
        bodies.append(json.loads(r.content))
        return httpx.Response(200, json=completion())

    config = BackendConfig(model=str(tmp_path), base_url="http://test/v1", options={"backoff_s": 0.0})
    await OpenAIGenerator(config, transport=httpx.MockTransport(vllm)).generate_step(REQUEST)
    assert bodies[0]["prompt"].startswith("[Solve the following")

    def llama_server(r: httpx.Request) -> httpx.Response:
        if r.url.path == "/props":
            return httpx.Response(
                200, json={"chat_template": "{% for m in messages %}({{ m['content'] }}){% endfor %}"}
            )
        return httpx.Response(200, json=completion())

    gen, rec = generator(llama_server, chat_template="auto")
    await gen.generate_step(REQUEST)
    assert json.loads(rec.requests[-1].content)["prompt"].startswith("(Solve the following")
    gen, _ = generator(lambda r: httpx.Response(404, json={"detail": "Not Found"}), chat_template="auto")
    with pytest.raises(ConfigError, match="cannot find the chat template of model 'weak-model'"):
        await gen.generate_step(REQUEST)


async def test_auto_on_an_unreachable_server_says_so_rather_than_missing_a_template() -> None:
    def down(r: httpx.Request) -> httpx.Response:
        if r.url.path.endswith("/models"):
            return httpx.Response(200, json=MODELS)
        raise httpx.ConnectError("connection refused")

    gen, _ = generator(down, chat_template="auto")
    with pytest.raises(BackendUnavailableError, match="cannot reach http://test/props"):
        await gen.generate_step(REQUEST)
