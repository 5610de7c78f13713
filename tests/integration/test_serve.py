"""``trim serve`` end to end: the CLI runs uvicorn on a loopback port in front of the llama.cpp test
server, and the official ``openai`` client talks to it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import openai
import pytest
import yaml

from trimroute.testing.llama_server import LlamaServer, free_port

pytestmark = pytest.mark.slow

KEY = "test-key-123"
QUESTION = "Tom has 3 apples and buys 4 more. How many apples does he have?"


@pytest.fixture(scope="module")
def trim_url(llama_server: LlamaServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``trim serve`` with SmolLM2 as weak and strong and the free confidence scorer; yields its /v1 URL."""
    tmp = tmp_path_factory.mktemp("trim-serve")
    backend = {"kind": "openai", "base_url": llama_server.base_url, "model": llama_server.model,
               "max_retries": 1, "options": {"backoff_s": 0.05}}  # fmt: skip
    config = {
        "policy": "thr:0.9",
        "weak": backend,
        "strong": backend | {"temperature": 0.2},
        "scorer": {"kind": "confidence"},
        "engine": {"max_steps": 3, "max_step_tokens": 24, "weak_logprobs": True},
        "serve": {"api_keys_env": "TRIM_TEST_KEYS"},
    }
    path = tmp / "serve.yaml"
    path.write_text(yaml.safe_dump(config))
    port = free_port()
    log = tmp / "serve.log"
    env = os.environ | {"TRIM_TEST_KEYS": KEY}
    cmd = [sys.executable, "-m", "trimroute", "serve", "--config", str(path), "--port", str(port)]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, f"trim serve exited:\n{log.read_text()}"
            try:
                if httpx.get(f"{url}/models", headers={"Authorization": f"Bearer {KEY}"}).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"trim serve did not start:\n{log.read_text()}"
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=15)


@pytest.fixture
def client(trim_url: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=trim_url, api_key=KEY, max_retries=0, timeout=120) as c:
        yield c


def test_answer_with_usage_per_role_equal_to_the_trajectory(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(
        model="trim-thr-0.99",
        messages=[{"role": "user", "content": QUESTION}],
        extra_body={"trim": {"trace": True}},
    )
    trim = r.model_extra["trim"]  # type: ignore[index]
    trace = trim["trace"]
    assert r.choices[0].message.content == "\n\n".join(s["text"] for s in trace["steps"])
    assert r.choices[0].message.content
    usage = trim["usage"]
    for role in ("weak", "strong"):
        written = [s for s in trace["steps"] + trace["discarded"] if s["role"] == role]
        assert usage[role]["generated_tokens"] == sum(s["generated_tokens"] for s in written)
        assert usage[role]["prompt_tokens"] == sum(s["prompt_tokens"] for s in written)
        assert usage[role]["calls"] == sum(s["calls"] for s in written)
    assert usage["weak"]["discarded_tokens"] == sum(s["generated_tokens"] for s in trace["discarded"])
    # k = 0.99 escalates SmolLM2's hesitant steps, so both models wrote part of the answer
    assert trim["escalations"] >= 1
    assert trim["escalations"] == len(trace["discarded"]) == sum(s["role"] == "strong" for s in trace["steps"])
    assert r.usage is not None
    assert r.usage.completion_tokens == sum(u["generated_tokens"] for u in usage.values())
    assert r.usage.prompt_tokens == sum(u["prompt_tokens"] for u in usage.values())


def test_stream_of_steps_with_usage_last(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="trim-thr-0.99",
        messages=[{"role": "user", "content": QUESTION}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    *steps, final, last = chunks
    assert steps and all(c.model_extra["trim"]["role"] in ("weak", "strong") for c in steps)  # type: ignore[index]
    text = "".join(c.choices[0].delta.content or "" for c in steps)
    assert text and final.choices[0].finish_reason in ("stop", "length")
    summary = final.model_extra["trim"]  # type: ignore[index]
    assert summary["steps"] == len(steps)
    assert last.choices == [] and last.usage is not None
    assert last.usage.completion_tokens == sum(u["generated_tokens"] for u in summary["usage"].values())


def test_text_completion_through_a_pass_through(client: openai.OpenAI) -> None:
    r = client.completions.create(model="weak", prompt=QUESTION)
    assert r.choices[0].text and r.model_extra["trim"]["usage"]["strong"]["calls"] == 0  # type: ignore[index]


def test_auth_rejected_without_the_key(trim_url: str) -> None:
    with openai.OpenAI(base_url=trim_url, api_key="wrong", max_retries=0) as c, pytest.raises(
        openai.AuthenticationError
    ):  # fmt: skip
        c.models.list()
    assert httpx.get(f"{trim_url}/models").status_code == 401


def test_limits_enforced(client: openai.OpenAI) -> None:
    messages = [{"role": "user", "content": QUESTION}]
    with pytest.raises(openai.BadRequestError, match="exceeds this server's limit"):
        client.chat.completions.create(model="weak", messages=messages, max_tokens=100_000)  # type: ignore[arg-type]
    with pytest.raises(openai.BadRequestError, match="trim.max_steps=9 exceeds"):
        client.chat.completions.create(model="weak", messages=messages, extra_body={"trim": {"max_steps": 9}})  # type: ignore[arg-type]
    with pytest.raises(openai.NotFoundError, match="names no router"):
        client.chat.completions.create(model="gpt-4o", messages=messages)  # type: ignore[arg-type]
    big = [{"role": "user", "content": "x" * 1_100_000}]
    with pytest.raises(openai.APIStatusError) as e:
        client.chat.completions.create(model="weak", messages=big)  # type: ignore[arg-type]
    assert e.value.status_code == 413


def test_backend_killed_gives_502_and_the_server_recovers(
    client: openai.OpenAI, llama_server: LlamaServer, trim_url: str
) -> None:
    messages = [{"role": "user", "content": QUESTION}]
    health = trim_url.removesuffix("/v1") + "/health"
    llama_server.stop()
    try:
        with pytest.raises(openai.APIStatusError) as e:
            client.chat.completions.create(model="weak", messages=messages)  # type: ignore[arg-type]
        assert e.value.status_code == 502
        assert e.value.body["role"] == "weak" and "cannot reach" in e.value.body["message"]  # type: ignore[index]
        assert httpx.get(health).status_code == 503
    finally:
        llama_server.start()
    assert httpx.get(health).json()["status"] == "ok"
    r = client.chat.completions.create(model="weak", messages=messages)  # type: ignore[arg-type]
    assert r.choices[0].message.content
