"""The server in-process (``httpx.ASGITransport``) on scripted backends: answers, streaming, usage, errors."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, MutableMapping
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from trimroute.errors import BackendTimeoutError, BackendUnavailableError
from trimroute.testing import ScriptedGenerator, ScriptedScorer
from trimroute.testing.llama_server import free_port
from trimroute.types import StepRequest

from .conftest import MakeApp, SlowGenerator

Connect = Callable[[FastAPI], httpx.AsyncClient]
Events = Callable[[str], list[Any]]

CHAT = {"model": "trim-thr-0.5", "messages": [{"role": "user", "content": "What is 1 + 1?"}]}


def chat(**extra: Any) -> dict[str, Any]:
    return CHAT | extra


async def test_chat_answer_routes_the_low_scored_step_and_reports_usage_per_role(
    make_app: MakeApp, client_for: Connect
) -> None:
    strong = ScriptedGenerator("strong", ["x", "b = 1", "z"])
    client = client_for(make_app(strong=strong))
    r = await client.post("/v1/chat/completions", json=chat(trim={"trace": True}))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "chat.completion" and body["model"] == "trim-thr-0.5"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "a = 1\n\nb = 1\n\nso \\boxed{2}"}
    assert body["choices"][0]["finish_reason"] == "stop"
    trim = body["trim"]
    assert trim["policy"] == "thr:0.5" and trim["escalations"] == 1 and trim["final_answer"] == "2"
    # scripted tokens are words: weak wrote 3 + 4 (discarded) + 2, strong 3
    assert trim["usage"]["weak"] == {"calls": 3, "prompt_tokens": trim["usage"]["weak"]["prompt_tokens"],
                                     "generated_tokens": 9, "discarded_tokens": 4}  # fmt: skip
    assert trim["usage"]["strong"]["generated_tokens"] == 3 and trim["usage"]["scorer"]["calls"] == 3
    roles = trim["usage"].values()
    assert body["usage"]["completion_tokens"] == sum(u["generated_tokens"] for u in roles)
    assert body["usage"]["prompt_tokens"] == sum(u["prompt_tokens"] for u in roles)
    assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + body["usage"]["completion_tokens"]
    trace = trim["trace"]
    assert [(s["role"], s["action"]) for s in trace["steps"]] == [
        ("weak", "continue"), ("strong", "regenerate"), ("weak", "continue")
    ]  # fmt: skip
    assert trace["steps"][1]["score"] == pytest.approx(0.1)
    assert [d["text"] for d in trace["discarded"]] == ["wrong b = 3"]
    # the strong model continued exactly the weak model's prefix
    assert strong.requests[0].prefill == "Solution: a = 1\n\n"


async def test_no_trace_unless_asked(make_app: MakeApp, client_for: Connect) -> None:
    r = await client_for(make_app()).post("/v1/chat/completions", json=chat())
    assert "trace" not in r.json()["trim"]


async def test_stream_sends_each_accepted_step_then_usage(
    make_app: MakeApp, client_for: Connect, events: Events
) -> None:
    client = client_for(make_app())
    r = await client.post("/v1/chat/completions", json=chat(stream=True, stream_options={"include_usage": True}))
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    chunks = events(r.text)
    assert chunks[-1] == "[DONE]"
    *steps, final, usage, _ = chunks
    assert steps[0]["choices"][0]["delta"]["role"] == "assistant"
    assert "".join(c["choices"][0]["delta"]["content"] for c in steps) == "a = 1\n\nb = 1\n\nso \\boxed{2}"
    # the regenerated step is sent once the strong model wrote it; the discarded proposal never is
    assert [c["trim"]["role"] for c in steps] == ["weak", "strong", "weak"]
    assert "wrong" not in r.text
    assert final["choices"][0]["finish_reason"] == "stop" and final["trim"]["escalations"] == 1
    assert usage["choices"] == [] and usage["usage"]["completion_tokens"] == 9 + 3
    assert all(c["object"] == "chat.completion.chunk" and c["id"] == steps[0]["id"] for c in chunks[:-1])


async def test_stream_without_include_usage_has_no_usage_chunk(
    make_app: MakeApp, client_for: Connect, events: Events
) -> None:
    r = await client_for(make_app()).post("/v1/chat/completions", json=chat(stream=True))
    assert not any("usage" in c for c in events(r.text)[:-1])


async def test_multi_turn_routes_the_last_user_turn_with_earlier_turns_as_context(
    make_app: MakeApp, client_for: Connect
) -> None:
    weak = ScriptedGenerator("weak", ["\\boxed{4}"])
    client = client_for(make_app(weak=weak))
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is 1 + 1?"},
        {"role": "assistant", "content": "2"},
        {"role": "user", "content": [{"type": "text", "text": "And 2 + 2?"}]},
    ]
    r = await client.post("/v1/chat/completions", json={"model": "weak", "messages": messages})
    assert r.status_code == 200, r.text
    sent = weak.requests[0].messages
    assert [(m.role, m.content) for m in sent[:3]] == [("system", "Be brief."), ("user", "What is 1 + 1?"),
                                                      ("assistant", "2")]  # fmt: skip
    assert sent[3].role == "user" and sent[3].content.endswith("\nQuestion: And 2 + 2?")
    assert sent[4].role == "assistant" and sent[4].content == "Solution:\n\n"


async def test_text_completions_answer_and_stream(make_app: MakeApp, client_for: Connect, events: Events) -> None:
    client = client_for(make_app())
    r = await client.post("/v1/completions", json={"model": "trim", "prompt": "What is 1 + 1?"})
    body = r.json()
    assert body["object"] == "text_completion" and body["choices"][0]["text"].endswith("\\boxed{2}")
    r = await client.post("/v1/completions", json={"model": "trim", "prompt": "What is 1 + 1?", "stream": True})
    chunks = events(r.text)
    assert "".join(c["choices"][0]["text"] for c in chunks[:-1]) == body["choices"][0]["text"]


async def test_pass_throughs_use_one_model_and_no_scorer(make_app: MakeApp, client_for: Connect) -> None:
    scorer = ScriptedScorer()
    client = client_for(make_app(scorer=scorer))
    weak = (await client.post("/v1/chat/completions", json=chat(model="weak"))).json()["trim"]
    strong = (await client.post("/v1/chat/completions", json=chat(model="strong"))).json()["trim"]
    assert weak["usage"]["strong"]["calls"] == 0 and strong["usage"]["weak"]["calls"] == 0
    assert scorer.calls == 0


async def test_extension_overrides_policy_and_budget(make_app: MakeApp, client_for: Connect) -> None:
    client = client_for(make_app())
    never = (await client.post("/v1/chat/completions", json=chat(trim={"threshold": 0.05}))).json()["trim"]
    assert never["policy"] == "thr:0.05" and never["escalations"] == 0
    broke = (await client.post("/v1/chat/completions", json=chat(trim={"budget": 0}))).json()["trim"]
    assert broke["escalations"] == 0 and broke["usage"]["strong"]["calls"] == 0
    short = (await client.post("/v1/chat/completions", json=chat(model="weak", trim={"max_steps": 1}))).json()
    assert short["trim"]["steps"] == 1 and short["choices"][0]["finish_reason"] == "length"
    spec = (await client.post("/v1/chat/completions", json=chat(trim={"policy": "strong"}))).json()["trim"]
    assert spec["policy"] == "strong"


async def test_models_lists_the_routers(make_app: MakeApp, client_for: Connect) -> None:
    client = client_for(make_app(serve={"routers": {"trim-careful": "thr:0.9"}}))
    data = (await client.get("/v1/models")).json()["data"]
    assert {m["id"]: m["trim"]["policy"] for m in data} == {
        "weak": "weak", "strong": "strong", "trim": "thr:0.5", "trim-careful": "thr:0.9"
    }  # fmt: skip
    r = await client.post("/v1/chat/completions", json=chat(model="trim-careful"))
    assert r.json()["trim"]["policy"] == "thr:0.9"


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        (chat(model="gpt-4"), 404, "names no router"),
        (chat(model="trim-thr-high"), 400, "takes a number"),
        (chat(max_tokens=10_000), 400, "max_tokens=10000 exceeds this server's limit of 4096"),
        (chat(trim={"max_steps": 99}), 400, "trim.max_steps=99 exceeds"),
        (chat(trim={"policy": "thr:0.3", "threshold": 0.3}), 400, "not both"),
        (chat(trim={"treshold": 0.3}), 400, "trim.treshold"),
        (chat(n=2), 400, "n must be 1"),
        (chat(messages=[{"role": "assistant", "content": "hi"}]), 400, "last message must be the user turn"),
        ({"model": "trim"}, 400, "messages"),
    ],
)
async def test_bad_requests_get_openai_error_envelopes(
    make_app: MakeApp, client_for: Connect, body: dict[str, Any], status: int, needle: str
) -> None:
    r = await client_for(make_app()).post("/v1/chat/completions", json=body)
    assert r.status_code == status
    error = r.json()["error"]
    assert needle in error["message"] and error["type"] == "invalid_request_error"


async def test_body_size_limit(make_app: MakeApp, client_for: Connect) -> None:
    client = client_for(make_app(serve={"max_body_bytes": 200}))
    big = chat(messages=[{"role": "user", "content": "x" * 500}])
    r = await client.post("/v1/chat/completions", json=big)
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"

    async def chunked() -> Any:  # no Content-Length: counted while received
        yield json.dumps(big).encode()

    r = await client.post("/v1/chat/completions", content=chunked(), headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert (await client.post("/v1/chat/completions", json=chat())).status_code == 200


async def test_api_keys_from_env_and_file(
    make_app: MakeApp, client_for: Connect, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    monkeypatch.setenv("TRIM_KEYS", "k1, k2")
    keyfile = tmp_path / "keys"
    keyfile.write_text("# ops team\nk3\n")
    client = client_for(make_app(serve={"api_keys_env": "TRIM_KEYS", "api_keys_file": str(keyfile)}))
    assert (await client.post("/v1/chat/completions", json=chat())).status_code == 401
    r = await client.post("/v1/chat/completions", json=chat(), headers={"Authorization": "Bearer nope"})
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    assert (await client.get("/v1/models")).status_code == 401
    for key in ("k1", "k2", "k3"):
        r = await client.post("/v1/chat/completions", json=chat(), headers={"Authorization": f"Bearer {key}"})
        assert r.status_code == 200
    assert (await client.get("/health")).status_code == 200  # probes stay open


def failing(error: Exception, after: int = 0) -> Callable[[StepRequest], str]:
    """A script that fails once ``after`` steps are in the pre-fill (while ``armed``)."""

    def script(request: StepRequest) -> str:
        n = request.n_steps
        if script.armed and n >= after:  # type: ignore[attr-defined]
            raise error
        return ["a = 1", "b = 2", "\\boxed{3}"][min(n, 2)]

    script.armed = True  # type: ignore[attr-defined]
    return script


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (BackendUnavailableError("cannot reach http://w (is the server running?)"), 502, "weak_unavailable"),
        (BackendTimeoutError("http://w did not answer within 1s"), 504, "weak_timeout"),
    ],
)
async def test_backend_failure_names_the_role_and_the_server_recovers(
    make_app: MakeApp, client_for: Connect, error: Exception, status: int, code: str
) -> None:
    script = failing(error)
    client = client_for(make_app(weak=ScriptedGenerator("weak", script)))
    r = await client.post("/v1/chat/completions", json=chat(model="weak"))
    assert r.status_code == status
    assert r.json()["error"]["role"] == "weak" and r.json()["error"]["code"] == code
    assert "is the server running" in r.json()["error"]["message"] or "did not answer" in r.json()["error"]["message"]
    script.armed = False  # type: ignore[attr-defined]  # the backend is back
    assert (await client.post("/v1/chat/completions", json=chat(model="weak"))).status_code == 200
    metrics = (await client.get("/metrics")).text
    assert f'trim_backend_errors_total{{error="{type(error).__name__}",role="weak"}} 1.0' in metrics


async def test_failure_mid_stream_ends_the_stream_with_an_error_event(
    make_app: MakeApp, client_for: Connect, events: Events
) -> None:
    weak = ScriptedGenerator("weak", failing(BackendUnavailableError("down"), after=1))
    client = client_for(make_app(weak=weak))
    r = await client.post("/v1/chat/completions", json=chat(model="weak", stream=True))
    assert r.status_code == 200
    *_, step, error, done = events(r.text)
    assert step["choices"][0]["delta"]["content"] == "a = 1"
    assert error["error"]["role"] == "weak" and done == "[DONE]"
    # before the first step the request still gets a real status code
    weak = ScriptedGenerator("weak", failing(BackendUnavailableError("down")))
    r = await client_for(make_app(weak=weak)).post("/v1/chat/completions", json=chat(model="weak", stream=True))
    assert r.status_code == 502


class DownScorer(ScriptedScorer):
    async def score(self, problem: Any, steps: Any) -> Any:
        self.calls += 1
        raise BackendUnavailableError("cannot reach http://prm")


async def test_scorer_down_uses_the_configured_fallback_and_says_so(make_app: MakeApp, client_for: Connect) -> None:
    scorer = DownScorer()
    client = client_for(make_app(scorer=scorer, serve={"scorer_fallback": "weak", "scorer_retry_s": 60}))
    r = await client.post("/v1/chat/completions", json=chat())
    assert r.status_code == 200
    trim = r.json()["trim"]
    assert trim["policy"] == "weak" and trim["fallback"]["policy"] == "weak"
    assert "scorer unavailable" in trim["fallback"]["reason"]
    # while the scorer is known down, requests go straight to the fallback
    assert (await client.post("/v1/chat/completions", json=chat())).status_code == 200
    assert scorer.calls == 1
    health = (await client.get("/health")).json()
    assert health["scorer_fallback"]["policy"] == "weak"
    assert "trim_scorer_fallbacks_total 2.0" in (await client.get("/metrics")).text


async def test_scorer_down_without_fallback_is_a_502_naming_the_scorer(make_app: MakeApp, client_for: Connect) -> None:
    r = await client_for(make_app(scorer=DownScorer())).post("/v1/chat/completions", json=chat())
    assert r.status_code == 502 and r.json()["error"]["role"] == "scorer"


async def test_request_timeout_is_a_504_and_stops_the_backend_call(make_app: MakeApp, client_for: Connect) -> None:
    slow = SlowGenerator(delay_s=30)
    client = client_for(make_app(weak=slow, serve={"request_timeout_s": 0.05}))
    r = await client.post("/v1/chat/completions", json=chat(model="weak"))
    assert r.status_code == 504 and r.json()["error"]["code"] == "timeout"
    assert slow.cancelled == 1


async def test_too_many_pending_requests_get_503(make_app: MakeApp, client_for: Connect) -> None:
    slow = SlowGenerator(delay_s=0.2)
    client = client_for(make_app(weak=slow, serve={"max_pending": 1}))
    first = asyncio.create_task(client.post("/v1/chat/completions", json=chat(model="weak")))
    await slow.started.wait()
    r = await client.post("/v1/chat/completions", json=chat(model="weak"))
    assert r.status_code == 503 and r.headers["retry-after"] == "1"
    assert (await first).status_code == 200


async def test_client_disconnect_cancels_the_backend_calls(make_app: MakeApp) -> None:
    slow = SlowGenerator(delay_s=30)
    app = make_app(weak=slow)
    body = json.dumps(chat(model="weak")).encode()
    sent: list[MutableMapping[str, Any]] = []
    messages = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop()
        await slow.started.wait()  # the client hangs up once the backend call is under way
        return {"type": "http.disconnect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
        "path": "/v1/chat/completions", "raw_path": b"/v1/chat/completions", "query_string": b"",
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        "server": ("trim.test", 80), "client": ("127.0.0.1", 1), "root_path": "",
    }  # fmt: skip
    await asyncio.wait_for(app(scope, receive, send), timeout=5)
    assert slow.cancelled == 1
    metrics = app.state.handler.metrics.render().decode()
    assert 'trim_requests_total{endpoint="chat",status="499"} 1.0' in metrics


async def test_metrics_count_requests_steps_and_tokens(make_app: MakeApp, client_for: Connect) -> None:
    client = client_for(make_app())
    await client.post("/v1/chat/completions", json=chat())
    r = await client.get("/metrics")
    assert r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert 'trim_requests_total{endpoint="chat",status="200"} 1.0' in text
    assert 'trim_steps_total{role="strong"} 1.0' in text and 'trim_steps_total{role="weak"} 2.0' in text
    assert 'trim_tokens_total{kind="discarded",role="weak"} 4.0' in text
    assert "trim_escalations_total 1.0" in text
    assert 'trim_first_step_seconds_count{endpoint="chat"} 1.0' in text  # time to the first accepted step


async def test_health_probes_backends_over_http(make_app: MakeApp, client_for: Connect) -> None:
    r = await client_for(make_app()).get("/health")
    assert r.status_code == 200 and r.json()["backends"]["weak"]["detail"] == "in process"
    dead = f"http://127.0.0.1:{free_port()}/v1"
    app = make_app(run={"policy": "thr:0.5", "weak": {"base_url": dead}})
    r = await client_for(app).get("/health")
    assert r.status_code == 503 and r.json()["status"] == "degraded"
    assert r.json()["backends"]["weak"] == {
        "reachable": False,
        "url": dead + "/models",
        "detail": "cannot reach: ConnectError",
    }


async def test_health_probes_every_replica(make_app: MakeApp, client_for: Connect) -> None:
    dead = [f"http://127.0.0.1:{free_port()}/v1" for _ in range(2)]
    app = make_app(run={"policy": "thr:0.5", "weak": {"base_urls": dead}})
    r = await client_for(app).get("/health")
    assert r.status_code == 503 and r.json()["backends"]["weak"]["reachable"] is False
    assert [p["url"] for p in r.json()["backends"]["weak"]["replicas"]] == [u + "/models" for u in dead]


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.fields: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.fields.append(getattr(record, "fields", {}))


@pytest.mark.parametrize("log_prompts", [False, True])
async def test_request_log_has_counts_and_prompts_only_when_asked(
    make_app: MakeApp, client_for: Connect, log_prompts: bool
) -> None:
    records = Records()
    log = logging.getLogger("trimroute.serve")
    log.addHandler(records)
    level = log.level
    log.setLevel(logging.INFO)
    try:
        client = client_for(make_app(serve={"log_prompts": log_prompts}))
        await client.post("/v1/chat/completions", json=chat())
    finally:
        log.removeHandler(records)
        log.setLevel(level)
    (entry,) = [f for f in records.fields if f.get("endpoint") == "chat"]
    assert entry["status"] == 200 and entry["escalations"] == 1 and entry["policy"] == "thr:0.5"
    assert ("prompt" in entry) is log_prompts and ("answer" in entry) is log_prompts
    assert "What is 1 + 1?" not in json.dumps(entry) or log_prompts
