"""One HTTP exchange carried as plain data, so that it can cross a process boundary (a Ray Serve handle
call) and be played against the server app in process.

``relay(app, request)`` runs ``request`` through an ASGI app and yields the response's ``ResponseStart``
and then its body chunks as they are sent: a streamed answer (SSE) stays streamed. When the consumer
stops early (its client disconnected), the app sees ``http.disconnect`` and its request is cancelled,
as it would be under uvicorn. ``exchange`` is the same in one piece, for a request that does not stream.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

__all__ = ["HttpRequest", "ResponseStart", "exchange", "relay"]

Headers = tuple[tuple[bytes, bytes], ...]
Message = MutableMapping[str, Any]
AsgiApp = Callable[
    [MutableMapping[str, Any], Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]],
    Awaitable[None],
]


@dataclass(frozen=True)
class HttpRequest:
    """An HTTP request with its whole body (TRIM's requests are small JSON documents)."""

    method: str
    path: str
    headers: Headers = ()
    body: bytes = b""
    query_string: bytes = b""
    client: tuple[str, int] | None = None

    @classmethod
    def from_scope(cls, scope: MutableMapping[str, Any], body: bytes) -> HttpRequest:
        client = scope.get("client")
        path, prefix = scope["path"], scope.get("root_path", "")
        return cls(
            method=scope["method"],
            path=path[len(prefix) :] if prefix and path.startswith(prefix) else path,  # the app's own routes
            headers=tuple((bytes(k), bytes(v)) for k, v in scope.get("headers", ())),
            body=body,
            query_string=scope.get("query_string", b""),
            client=(client[0], client[1]) if client else None,
        )

    def streams(self) -> bool:
        """Whether the request asks for a streamed answer (``"stream": true`` in its JSON body)."""
        if b'"stream"' not in self.body:
            return False
        try:
            data = json.loads(self.body)
        except ValueError:
            return False
        return isinstance(data, dict) and data.get("stream") is True

    def scope(self) -> dict[str, Any]:
        return {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "scheme": "http",
            "method": self.method,
            "path": self.path,
            "raw_path": self.path.encode(),
            "root_path": "",
            "query_string": self.query_string,
            "headers": list(self.headers),
            "client": self.client,
            "server": None,
        }


@dataclass(frozen=True)
class ResponseStart:
    """The status line and headers of a response (``http.response.start``)."""

    status: int
    headers: Headers = ()

    def header(self, name: bytes) -> bytes | None:
        return next((v for k, v in self.headers if k.lower() == name), None)


async def relay(app: AsgiApp, request: HttpRequest) -> AsyncGenerator[ResponseStart | bytes, None]:
    """The response of ``app`` to ``request``: its start, then each non-empty body chunk as it is sent."""
    messages: asyncio.Queue[Message | None] = asyncio.Queue()
    gone = asyncio.Event()
    body_read = False

    async def receive() -> Message:
        nonlocal body_read
        if not body_read:
            body_read = True
            return {"type": "http.request", "body": request.body, "more_body": False}
        await gone.wait()  # the app's disconnect watcher waits here until the consumer leaves
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        await messages.put(message)

    task = asyncio.ensure_future(app(request.scope(), receive, send))
    task.add_done_callback(lambda _: messages.put_nowait(None))
    try:
        while (message := await messages.get()) is not None:
            if message["type"] == "http.response.start":
                headers = tuple((bytes(k), bytes(v)) for k, v in message.get("headers", ()))
                yield ResponseStart(message["status"], headers)
            elif message["type"] == "http.response.body" and message.get("body"):
                yield bytes(message["body"])
        task.result()  # an app that raised instead of answering
    finally:
        gone.set()
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def exchange(app: AsgiApp, request: HttpRequest) -> tuple[ResponseStart, bytes]:
    """The response of ``app`` to ``request`` in one piece: its start and its whole body."""
    start, body = None, bytearray()
    async for item in relay(app, request):
        if isinstance(item, ResponseStart):
            start = item
        else:
            body += item
    if start is None:
        raise RuntimeError(f"the app sent no response to {request.method} {request.path}")
    return start, bytes(body)
