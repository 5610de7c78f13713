"""``trim serve --ray``: the server app of ``create_app`` on Ray Serve (docs/ray_serve.md).

Two deployments make one Serve application:

* ``TrimReplica`` (``--replicas N`` or autoscaled): each replica builds the app and its backends from
  the server config and answers requests relayed to it as plain data (``serve.relay``), streamed
  answers included.
* ``TrimIngress`` (Serve's HTTP ingress; no model, little CPU): forwards each request to a replica
  through a deployment handle, sends it to another replica if its replica dies before the answer has
  started (``serve.forward``), and answers ``GET /metrics`` with every replica's metrics, each series
  labelled ``replica``.

``build`` is the application builder for Ray's own tools:
``serve run trimroute.serve.ray_serve:build config=serve.yaml``, or a Serve config file.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Mapping
from typing import Any, cast

import ray
from prometheus_client.core import CounterMetricFamily
from ray import serve
from ray.serve import Application
from ray.serve.handle import DeploymentHandle, DeploymentResponseGenerator
from starlette.requests import Request
from starlette.responses import Response

from trimroute.config import load_file
from trimroute.errors import ConfigError
from trimroute.serve.app import create_app
from trimroute.serve.forward import Forwarder
from trimroute.serve.logs import configure_logging
from trimroute.serve.metrics import CONTENT_TYPE_LATEST, merge_replicas
from trimroute.serve.relay import HttpRequest, ResponseStart, exchange, relay
from trimroute.serve.scaling import replica_scaling
from trimroute.serve.settings import ServerConfig

__all__ = ["APP_NAME", "INGRESS", "REPLICA", "application", "build"]

APP_NAME, REPLICA, INGRESS = "trim", "TrimReplica", "TrimIngress"
# a replica is dead (killed, crashed, its node lost) or cannot be reached: the request never ran to an answer
RETRYABLE: tuple[type[BaseException], ...] = (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError)


class TrimReplica:
    """One copy of the server app, with its own backends, engine and metrics."""

    def __init__(self, config: dict[str, Any], log_level: str = "info") -> None:
        configure_logging(log_level)
        self.app = create_app(ServerConfig.from_mapping(config))
        self.replica = serve.get_replica_context().replica_id.unique_id

    async def handle(self, request: HttpRequest) -> AsyncIterator[ResponseStart | bytes]:
        async for item in relay(self.app, request):
            yield item

    async def answer(self, request: HttpRequest) -> tuple[ResponseStart, bytes]:
        return await exchange(self.app, request)

    def metrics(self) -> tuple[str, bytes]:
        return self.replica, self.app.state.handler.metrics.render()

    async def __del__(self) -> None:  # Serve awaits it when the replica is stopped
        await self.app.state.handler.aclose()


class TrimIngress:
    """The HTTP entry point: forwards to ``TrimReplica`` replicas."""

    def __init__(self, replicas: DeploymentHandle, attempts: int = 3) -> None:
        self.replicas = replicas
        self.forward = Forwarder(self._call, RETRYABLE, answer=self._answer, attempts=attempts)

    async def _answer(self, request: HttpRequest) -> tuple[ResponseStart, bytes]:
        response = self.replicas.options(method_name="answer").remote(request)
        try:
            return cast(tuple[ResponseStart, bytes], await response)
        except asyncio.CancelledError:
            response.cancel()  # the client left: stop the replica's work too
            raise

    async def _call(self, request: HttpRequest) -> AsyncIterator[ResponseStart | bytes]:
        stream = cast(
            DeploymentResponseGenerator, self.replicas.options(method_name="handle", stream=True).remote(request)
        )
        done = False
        try:
            async for item in stream:
                yield item
            done = True
        finally:
            if not done:
                stream.cancel()  # the client left: stop the replica's work too

    async def __call__(self, request: Request) -> Response:
        if request.method == "GET" and request.url.path == "/metrics":
            return Response(await self._metrics(), media_type=CONTENT_TYPE_LATEST)
        return await self.forward(HttpRequest.from_scope(request.scope, await request.body()))

    async def _metrics(self) -> bytes:
        """Every running replica's metrics (one call per replica; a replica dying meanwhile is left out),
        then this ingress replica's own counters."""
        answers = await self.replicas.broadcast("metrics").results_async(return_exceptions=True)
        own = [
            CounterMetricFamily(
                "trim_ingress_retries", "Requests sent again: their replica died before answering", self.forward.retried
            ),
            CounterMetricFamily(
                "trim_ingress_streams_cut", "Streams cut by their replica's death after they started", self.forward.cut
            ),
        ]
        return merge_replicas(dict(a for a in answers if isinstance(a, tuple)), own)


def application(
    config: Mapping[str, Any],
    *,
    replicas: int = 1,
    autoscale: tuple[int, int] | None = None,
    replica_cpus: float = 1.0,
    attempts: int = 3,
    env: Mapping[str, str] | None = None,
    log_level: str = "info",
) -> Application:
    """The Serve application: ``replicas`` copies of the app (or ``autoscale`` = (min, max)) behind the
    ingress. ``env`` is set in every replica's environment (API keys named by the config). The config
    is checked here, so a bad one fails before anything is deployed."""
    server = ServerConfig.from_mapping(config)
    scaling = replica_scaling(replicas, autoscale, server.serve.max_pending)
    actor: dict[str, Any] = {"num_cpus": replica_cpus}
    if env:
        actor["runtime_env"] = {"env_vars": dict(env)}
    # a replica admits serve.max_pending requests; more wait in Serve's queue, where a replica's death
    # does not touch them
    backend = (
        serve.deployment(name=REPLICA)(TrimReplica)
        .options(max_ongoing_requests=server.serve.max_pending, ray_actor_options=actor, **scaling)
        .bind(dict(config), log_level)
    )
    most = server.serve.max_pending * (autoscale[1] if autoscale else replicas)
    ingress = serve.deployment(name=INGRESS)(TrimIngress)
    return ingress.options(max_ongoing_requests=most, ray_actor_options={"num_cpus": 0}).bind(backend, attempts)


def build(args: dict[str, Any]) -> Application:
    """Application builder for ``serve run`` / Serve config files: ``config`` is a file path or the
    config itself (a mapping, e.g. inline in a KubeRay RayService); ``replicas`` and ``attempts``
    are optional. A Serve config file's ``deployments:`` section overrides replicas and resources."""
    unknown = sorted(set(args) - {"config", "replicas", "attempts", "replica_cpus", "log_level"})
    if unknown:
        raise ConfigError(f"unknown argument {unknown[0]!r}: use config, replicas, attempts, replica_cpus, log_level")
    config = args.get("config")
    if config is None:
        raise ConfigError("pass config=FILE (or an inline config mapping) to trimroute.serve.ray_serve:build")
    mapping = dict(config) if isinstance(config, Mapping) else load_file(os.fspath(config))
    return application(
        mapping,
        replicas=int(args.get("replicas", 1)),
        replica_cpus=float(args.get("replica_cpus", 1.0)),
        attempts=int(args.get("attempts", 3)),
        log_level=str(args.get("log_level", "info")),
    )
