"""``create_app(config)``: TRIM behind the OpenAI API (FastAPI). Routes are thin: they convert the
request, call the ``RoutingHandler`` kept in ``app.state``, and shape the answer.

A client that disconnects cancels its request, and with it the backend calls in flight.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException

from trimroute._version import __version__
from trimroute.errors import TrimError
from trimroute.serve import protocol
from trimroute.serve.auth import ApiKeys, load_api_keys
from trimroute.serve.backends import Backends
from trimroute.serve.errors import ApiError, to_api_error
from trimroute.serve.handler import RoutingHandler
from trimroute.serve.limits import BodyLimit
from trimroute.serve.logs import configure_logging, logger
from trimroute.serve.metrics import CONTENT_TYPE_LATEST
from trimroute.serve.protocol import ChatCompletionRequest, CompletionRequest, RouteParams
from trimroute.serve.settings import ServerConfig, load_server_config
from trimroute.types import Step

__all__ = ["CONFIG_ENV", "create_app", "create_app_from_env"]

CONFIG_ENV = "TRIM_SERVE_CONFIG"
CLIENT_GONE = 499  # nginx's code for "client closed the request": nobody reads this answer


def create_app(config: ServerConfig, backends: Backends | None = None) -> FastAPI:
    """The server app. ``backends`` defaults to those of ``config.run`` (tests pass fakes)."""
    keys = ApiKeys(load_api_keys(config.serve))
    handler = RoutingHandler(config, backends)
    if keys.open:
        logger.warning("no API keys configured: the server answers anyone (set serve.api_keys_env or api_keys_file)")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await handler.aclose()

    app = FastAPI(title="TRIM", version=__version__, lifespan=lifespan)
    app.state.handler = handler
    app.state.api_keys = keys
    app.state.started = int(time.time())
    app.add_middleware(BodyLimit, max_bytes=config.serve.max_body_bytes)
    _install_error_handlers(app)
    app.include_router(_routes)
    return app


def create_app_from_env() -> FastAPI:
    """Factory for uvicorn workers: the config file named by ``$TRIM_SERVE_CONFIG``."""
    configure_logging(os.environ.get("TRIM_SERVE_LOG_LEVEL", "info"))
    path = os.environ.get(CONFIG_ENV)
    if not path:
        raise TrimError(f"set {CONFIG_ENV} to the config file (trim serve --config FILE does this)")
    return create_app(load_server_config(path))


def _handler(request: Request) -> RoutingHandler:
    return request.app.state.handler  # type: ignore[no-any-return]


def _require_key(request: Request) -> None:
    request.app.state.api_keys.check(request.headers.get("authorization"))


_routes = APIRouter()
_v1 = APIRouter(prefix="/v1", dependencies=[Depends(_require_key)])


@_v1.post("/chat/completions")
async def chat_completions(body: ChatCompletionRequest, request: Request) -> Response:
    return await _answer(body.to_params(), request)


@_v1.post("/completions")
async def completions(body: CompletionRequest, request: Request) -> Response:
    return await _answer(body.to_params(), request)


@_v1.get("/models")
async def models(request: Request) -> dict[str, Any]:
    routers = _handler(request).routers
    created = request.app.state.started
    data = [
        {"id": name, "object": "model", "created": created, "owned_by": "trimroute", "trim": {"policy": spec}}
        for name, spec in routers.specs.items()
    ]
    return {"object": "list", "data": data}


@_routes.get("/health")
async def health(request: Request) -> JSONResponse:
    report = await _handler(request).health()
    return JSONResponse(report, status_code=200 if report["status"] == "ok" else 503)


@_routes.get("/metrics")
async def metrics(request: Request) -> Response:
    return Response(_handler(request).metrics.render(), media_type=CONTENT_TYPE_LATEST)


_routes.include_router(_v1)


async def _answer(params: RouteParams, request: Request) -> Response:
    handler = _handler(request)
    steps: asyncio.Queue[Step] = asyncio.Queue()
    task = asyncio.create_task(handler.solve(params, steps.put_nowait if params.stream else None))
    watcher = asyncio.create_task(_cancel_on_disconnect(request, task))
    streaming = False
    try:
        if not params.stream:
            trajectory, fallback = await task
            return JSONResponse(protocol.response(params, trajectory, fallback))
        # wait for the first step, so a request failing before any output gets a real status code
        first = await _next_step(steps, task)
        if first is None:
            task.result()  # raises the request's error
        streaming = True
        return StreamingResponse(_events(params, first, steps, task, watcher), media_type="text/event-stream")
    except asyncio.CancelledError:
        if watcher.done() and not watcher.cancelled():
            return Response(status_code=CLIENT_GONE)
        raise
    finally:
        if not streaming:  # else the event stream owns both tasks
            task.cancel()
            watcher.cancel()


async def _events(
    params: RouteParams,
    first: Step | None,
    steps: asyncio.Queue[Step],
    task: asyncio.Task[tuple[Any, Any]],
    watcher: asyncio.Task[None],
) -> AsyncIterator[str]:
    """Server-sent events: one chunk per accepted step, the finish chunk, usage if asked, ``[DONE]``."""
    try:
        index, step = 0, first
        while step is not None:
            yield _sse(protocol.chunk(params, step, index))
            index += 1
            step = await _next_step(steps, task)
        try:
            trajectory, fallback = task.result()
        except Exception as e:  # the status line is sent: the error goes in the stream
            yield _sse(to_api_error(e).envelope())
        else:
            yield _sse(protocol.final_chunk(params, trajectory, fallback))
            if params.include_usage:
                yield _sse(protocol.usage_chunk(params, trajectory))
        yield "data: [DONE]\n\n"
    finally:
        task.cancel()
        watcher.cancel()


async def _next_step(steps: asyncio.Queue[Step], task: asyncio.Task[Any]) -> Step | None:
    """The next accepted step, or None once the request has finished and every step was taken."""
    if steps.empty() and not task.done():
        getter = asyncio.ensure_future(steps.get())
        try:
            done, _ = await asyncio.wait({getter, task}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not getter.done():
                getter.cancel()  # a step put meanwhile stays in the queue
        if getter in done:
            return getter.result()
    return None if steps.empty() else steps.get_nowait()


async def _cancel_on_disconnect(request: Request, task: asyncio.Task[Any]) -> None:
    """Cancel ``task`` (and the backend calls it awaits) when the client disconnects."""
    while (await request.receive())["type"] != "http.disconnect":
        pass
    task.cancel()


def _sse(data: dict[str, Any]) -> str:
    return f"data: {json.dumps(data, ensure_ascii=False, separators=(',', ':'))}\n\n"


def _install_error_handlers(app: FastAPI) -> None:
    """Every error leaves as an OpenAI envelope (mapping in ``serve.errors``)."""

    def send(error: ApiError) -> JSONResponse:
        return JSONResponse(error.envelope(), status_code=error.status, headers=error.headers)

    async def api_error(request: Request, exc: Exception) -> JSONResponse:
        return send(to_api_error(exc))

    async def validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"] if p != "body")
        message = first["msg"].removeprefix("Value error, ")
        return send(ApiError(400, f"{where}: {message}" if where else message, param=where or None))

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        return send(
            ApiError(
                exc.status_code, str(exc.detail), "invalid_request_error" if exc.status_code < 500 else "server_error"
            )
        )

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(TrimError, api_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(HTTPException, http_error)
