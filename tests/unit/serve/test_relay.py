"""The pieces of ``trim serve --ray`` that need no Ray: a request relayed as plain data into the app,
the ingress's retry when a replica dies before answering, and the per-replica merge of ``/metrics``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

from trimroute.serve.forward import Forwarder
from trimroute.serve.metrics import Metrics, merge_replicas
from trimroute.serve.relay import HttpRequest, ResponseStart, exchange, relay

from .conftest import MakeApp, SlowGenerator

CHAT = {"model": "trim-thr-0.5", "messages": [{"role": "user", "content": "What is 1 + 1?"}]}
Events = Callable[[str], list[Any]]


class ReplicaDied(Exception):
    """Stands for Ray's ``ActorDiedError``."""


def post(body: bytes, path: str = "/v1/chat/completions") -> HttpRequest:
    return HttpRequest("POST", path, ((b"content-type", b"application/json"),), body)


def ingress(forward: Forwarder) -> httpx.AsyncClient:
    """An HTTP client of ``forward`` as the ingress deployment runs it."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        response = await forward(HttpRequest.from_scope(scope, body))
        await response(scope, receive, send)

    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ingress.test")


def flaky(app: FastAPI, deaths: int, after_chunks: int | None = None) -> Callable[..., AsyncIterator[Any]]:
    """A replica call: the first ``deaths`` calls die (before answering, or after ``after_chunks`` items)."""
    calls = 0

    async def call(request: HttpRequest) -> AsyncIterator[ResponseStart | bytes]:
        nonlocal calls
        calls += 1
        dies = calls <= deaths
        sent = 0
        async for item in relay(app, request):
            if dies and sent == (after_chunks or 0):
                raise ReplicaDied(f"replica {calls} died")
            yield item
            sent += 1

    return call


async def test_relay_gives_the_same_answer_as_http(make_app: MakeApp) -> None:
    app = make_app()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        direct = (await client.post("/v1/chat/completions", json=CHAT)).json()
    start, *chunks = [item async for item in relay(app, post(httpx.Request("POST", "/", json=CHAT).read()))]
    assert isinstance(start, ResponseStart) and start.status == 200
    assert start.header(b"content-type") == b"application/json"
    relayed = httpx.Response(200, content=b"".join(c for c in chunks if isinstance(c, bytes))).json()
    assert relayed["choices"] == direct["choices"] and relayed["trim"]["usage"] == direct["trim"]["usage"]


async def test_exchange_is_the_relay_in_one_piece(make_app: MakeApp) -> None:
    start, body = await exchange(make_app(), post(httpx.Request("POST", "/", json=CHAT).read()))
    assert start.status == 200 and httpx.Response(200, content=body).json()["object"] == "chat.completion"


def test_a_route_prefix_is_not_part_of_the_apps_path() -> None:
    scope = {"method": "GET", "path": "/trim/v1/models", "root_path": "/trim", "headers": [(b"a", b"b")]}
    request = HttpRequest.from_scope(scope, b"")
    assert request.path == "/v1/models" and request.headers == ((b"a", b"b"),)


def test_a_request_streams_when_its_body_says_so() -> None:
    assert post(b'{"model": "weak", "stream": true}').streams()
    assert not post(b'{"model": "weak", "stream": false}').streams()
    assert not post(b'{"model": "weak"}').streams() and not post(b'{"stream": tru').streams()


async def test_relay_streams_one_chunk_per_step(make_app: MakeApp, events: Events) -> None:
    body = httpx.Request("POST", "/", json=CHAT | {"stream": True}).read()
    start, *chunks = [item async for item in relay(make_app(), post(body))]
    assert isinstance(start, ResponseStart)
    assert (start.header(b"content-type") or b"").startswith(b"text/event-stream")
    texts = [c.decode() for c in chunks if isinstance(c, bytes)]
    assert len(texts) == len(chunks) >= 5  # 3 steps, the finish chunk, [DONE]
    payloads = [e for text in texts for e in events(text) if e != "[DONE]"]
    assert "".join(e["choices"][0]["delta"].get("content", "") for e in payloads) == "a = 1\n\nb = 1\n\nso \\boxed{2}"


async def test_consumer_leaving_cancels_the_request(make_app: MakeApp) -> None:
    slow = SlowGenerator(30.0)
    stream = relay(make_app(weak=slow), post(httpx.Request("POST", "/", json=CHAT | {"model": "weak"}).read()))
    waiting = asyncio.ensure_future(anext(stream))
    await asyncio.wait_for(slow.started.wait(), 5)
    waiting.cancel()
    await asyncio.gather(waiting, return_exceptions=True)
    await stream.aclose()
    assert slow.cancelled == 1


async def test_a_replica_dying_before_the_answer_is_retried(make_app: MakeApp) -> None:
    forward = Forwarder(flaky(make_app(), deaths=2), (ReplicaDied,), attempts=3, backoff_s=0)
    async with ingress(forward) as client:
        r = await client.post("/v1/chat/completions", json=CHAT)
        assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"].endswith("\\boxed{2}")
        s = await client.post("/v1/chat/completions", json=CHAT | {"stream": True})
        assert s.status_code == 200 and s.text.endswith("data: [DONE]\n\n")
    assert forward.retried == 2 and forward.cut == 0


async def test_a_non_streaming_request_takes_one_round_trip_and_is_retried(make_app: MakeApp) -> None:
    app, calls = make_app(), 0

    async def answer(request: HttpRequest) -> tuple[ResponseStart, bytes]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ReplicaDied("replica 1 died")
        return await exchange(app, request)

    async def never(request: HttpRequest) -> AsyncIterator[ResponseStart | bytes]:
        raise AssertionError("a non-streaming request went the streaming way")
        yield b""  # pragma: no cover

    forward = Forwarder(never, (ReplicaDied,), answer=answer, backoff_s=0)
    async with ingress(forward) as client:
        r = await client.post("/v1/chat/completions", json=CHAT)
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"].endswith("\\boxed{2}")
    assert r.headers["content-type"] == "application/json" and calls == 2 and forward.retried == 1


async def test_no_replica_left_is_a_503_envelope(make_app: MakeApp) -> None:
    forward = Forwarder(flaky(make_app(), deaths=5), (ReplicaDied,), attempts=2, backoff_s=0)
    async with ingress(forward) as client:
        r = await client.post("/v1/chat/completions", json=CHAT)
    assert r.status_code == 503 and r.json()["error"]["code"] == "replica_unavailable"
    assert "replica 2 died" in r.json()["error"]["message"]


async def test_a_stream_cut_after_its_first_step_ends_with_an_error_event(make_app: MakeApp, events: Events) -> None:
    forward = Forwarder(flaky(make_app(), deaths=1, after_chunks=2), (ReplicaDied,), backoff_s=0)
    async with ingress(forward) as client:
        r = await client.post("/v1/chat/completions", json=CHAT | {"stream": True})
    *steps, error, done = events(r.text)
    assert len(steps) == 1 and done == "[DONE]"
    assert error["error"]["code"] == "replica_died"
    assert forward.cut == 1 and forward.retried == 0


async def test_other_errors_are_not_retried(make_app: MakeApp) -> None:
    async def broken(request: HttpRequest) -> AsyncIterator[ResponseStart | bytes]:
        raise ValueError("a bug")
        yield b""  # pragma: no cover

    forward = Forwarder(broken, (ReplicaDied,))
    with pytest.raises(ValueError, match="a bug"):
        await forward(post(b"{}"))
    assert forward.retried == 0


def test_merged_metrics_label_each_replica() -> None:
    a, b = Metrics(), Metrics()
    a.requests.labels("chat", "200").inc(3)
    b.requests.labels("chat", "200").inc(2)
    b.latency.labels("chat").observe(0.3)
    text = merge_replicas({"r1": a.render(), "r2": b.render()}).decode()
    assert text.count("# TYPE trim_requests_total counter") == 1
    families = {f.name: f for f in text_string_to_metric_families(text)}
    totals = {s.labels["replica"]: s.value for s in families["trim_requests"].samples if s.name.endswith("_total")}
    assert totals == {"r1": 3.0, "r2": 2.0}
    counts = {s.labels["replica"]: s.value for s in families["trim_request_latency_seconds"].samples
              if s.name.endswith("_count")}  # fmt: skip
    assert counts == {"r2": 1.0}
