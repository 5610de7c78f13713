"""Fixtures for the server's unit tests: the app on scripted backends, reached in-process over ASGI."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from trimroute.config import RunConfig, from_dict
from trimroute.serve import Backends, ServerConfig, ServeSettings, create_app
from trimroute.testing import ScriptedGenerator, ScriptedScorer
from trimroute.types import FinishReason, Generation, StepRequest

WEAK = ["a = 1", "wrong b = 3", "so \\boxed{2}"]
STRONG = ["x", "b = 1", "z"]

MakeApp = Callable[..., FastAPI]


class SlowGenerator:
    """Answers ``text`` after ``delay_s``; records calls that were cancelled mid-way."""

    def __init__(self, delay_s: float, text: str = "\\boxed{1}") -> None:
        self.model, self.delay_s, self.text = "slow", delay_s, text
        self.started = asyncio.Event()
        self.cancelled = 0

    async def generate_step(self, request: StepRequest) -> Generation:
        self.started.set()
        try:
            await asyncio.sleep(self.delay_s)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        return Generation(self.text, prompt_tokens=5, generated_tokens=1, finish_reason=FinishReason.STOP)

    async def aclose(self) -> None:
        return None


@pytest.fixture
def make_app(monkeypatch: pytest.MonkeyPatch) -> MakeApp:
    """``make_app(weak=..., strong=..., scorer=..., serve={...}, run={...})`` with scripted defaults."""
    monkeypatch.delenv("TRIM_API_KEYS", raising=False)

    def make(
        weak: Any = None,
        strong: Any = None,
        scorer: Any = "default",
        serve: dict[str, Any] | None = None,
        run: dict[str, Any] | None = None,
    ) -> FastAPI:
        config = ServerConfig(
            run=from_dict(RunConfig, {"policy": "thr:0.5", **(run or {})}),
            serve=from_dict(ServeSettings, serve or {}),
        )
        backends = Backends(
            weak if weak is not None else ScriptedGenerator("weak", WEAK),
            strong if strong is not None else ScriptedGenerator("strong", STRONG),
            ScriptedScorer() if scorer == "default" else scorer,
        )
        return create_app(config, backends)

    return make


@pytest.fixture
async def client_for() -> AsyncIterator[Callable[[FastAPI], httpx.AsyncClient]]:
    clients: list[httpx.AsyncClient] = []

    def connect(app: FastAPI) -> httpx.AsyncClient:
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://trim.test")
        clients.append(client)
        return client

    yield connect
    for client in clients:
        await client.aclose()


def sse_events(body: str) -> list[Any]:
    """The ``data:`` payloads of a server-sent event stream (``[DONE]`` kept as a string)."""
    out = []
    for block in body.split("\n\n"):
        if block.startswith("data: "):
            data = block[len("data: ") :]
            out.append(data if data == "[DONE]" else json.loads(data))
    return out


@pytest.fixture
def events() -> Callable[[str], list[Any]]:
    return sse_events
