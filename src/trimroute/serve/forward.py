"""The ingress side of ``trim serve --ray``: send a request to a replica, and to another one if the
first dies before its answer has started.

Ray Serve re-routes a request that no replica has taken yet, but one in flight at a replica that dies
fails (its proxy answers 500). Until the first byte of the answer leaves the ingress nothing has been
sent, so such a request is sent again to a live replica: a non-streaming request is never lost to a
replica's death, nor a streaming one whose first step had not been sent. A stream cut after that ends
with an error event (the client has seen part of the answer; repeating it could differ).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from starlette.responses import JSONResponse, Response, StreamingResponse

from trimroute.serve.errors import ApiError
from trimroute.serve.logs import logger
from trimroute.serve.relay import HttpRequest, ResponseStart

__all__ = ["Forwarder"]

Call = Callable[[HttpRequest], AsyncIterator[ResponseStart | bytes]]
Answer = Callable[[HttpRequest], Awaitable[tuple[ResponseStart, bytes]]]


@dataclass
class Forwarder:
    """Forwards requests with ``call`` (one replica per call), retrying on the ``retryable`` errors that
    mean the replica died. ``answer``, when given, serves requests that do not ask to stream in one round
    trip. ``retried`` and ``cut`` count what happened, for tests and benchmarks."""

    call: Call
    retryable: tuple[type[BaseException], ...]
    answer: Answer | None = None
    attempts: int = 3
    backoff_s: float = 0.05
    retried: int = field(default=0, init=False)
    cut: int = field(default=0, init=False)

    async def __call__(self, request: HttpRequest) -> Response:
        error: BaseException | None = None
        unary = self.answer is not None and not request.streams()
        for attempt in range(self.attempts):
            if attempt:
                self.retried += 1
                logger.warning("replica died before answering (%s): retry %d of %s", error, attempt, request.path)
                await asyncio.sleep(self.backoff_s * attempt)  # time for the router to drop the dead replica
            if unary and self.answer is not None:
                try:
                    head, body = await self.answer(request)
                except self.retryable as e:
                    error = e
                    continue
                response = Response(body, status_code=head.status)
                response.raw_headers = list(head.headers)  # as the app sent them (content-length included)
                return response
            stream = aiter(self.call(request))
            try:
                start = await anext(stream)
                first = await anext(stream, b"")
            except self.retryable as e:
                error = e
                await _close(stream)
                continue
            except BaseException:
                await _close(stream)
                raise
            if not isinstance(start, ResponseStart) or not isinstance(first, bytes):
                await _close(stream)
                raise TypeError(f"a replica answered out of order: {type(start).__name__}, {type(first).__name__}")
            return self._response(start, first, stream)
        failure = ApiError(
            503, f"no replica answered after {self.attempts} attempts: {error}", code="replica_unavailable"
        )
        return JSONResponse(failure.envelope(), status_code=failure.status)

    def _response(self, start: ResponseStart, first: bytes, stream: AsyncIterator[ResponseStart | bytes]) -> Response:
        events = (start.header(b"content-type") or b"").startswith(b"text/event-stream")

        async def body() -> AsyncIterator[bytes]:
            try:
                if first:
                    yield first
                async for chunk in stream:
                    if isinstance(chunk, bytes):
                        yield chunk
            except self.retryable as e:
                self.cut += 1
                if not events:
                    raise
                failure = ApiError(502, f"the replica serving this stream died: {e}", code="replica_died")
                yield f"data: {json.dumps(failure.envelope())}\n\ndata: [DONE]\n\n".encode()
            finally:
                await _close(stream)

        response = StreamingResponse(body(), status_code=start.status)
        response.raw_headers = list(start.headers)  # as the app sent them (content-length included)
        return response


async def _close(stream: AsyncIterator[object]) -> None:
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        await aclose()
