"""The server's view of its backends: failures tagged with the role that failed, call metrics, and the
reachability probes of ``GET /health``."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from trimroute.config import RunConfig
from trimroute.engine import Engine
from trimroute.errors import BackendError
from trimroute.generators.base import Generator
from trimroute.runner import build_backends
from trimroute.scorers.base import Scorer
from trimroute.serve.metrics import Metrics
from trimroute.types import Generation, Problem, Role, Scores, Step, StepRequest

__all__ = ["Backends", "RoleGenerator", "RoleScorer", "probe"]


@dataclass(frozen=True)
class Backends:
    """The weak and strong generators and the scorer (None: score-free routers only)."""

    weak: Generator
    strong: Generator
    scorer: Scorer | None = None

    @classmethod
    def from_config(cls, config: RunConfig) -> Backends:
        return cls(*build_backends(config))

    def engine(self, config: RunConfig, metrics: Metrics) -> Engine:
        """One engine for all requests, so ``engine.backend_concurrency`` bounds each backend's calls; each
        backend is wrapped to say which role failed and to time its calls."""
        return Engine(self.weak, self.strong, self.scorer, config.engine).wrapped(
            lambda role, generator: RoleGenerator(generator, role, metrics),
            lambda scorer: RoleScorer(scorer, metrics),
        )

    async def aclose(self) -> None:
        unique = {id(b): b for b in (self.weak, self.strong, self.scorer) if b is not None}
        for backend in unique.values():
            await backend.aclose()


class _Tagged:
    role: Role
    metrics: Metrics

    def _failed(self, error: BackendError) -> None:
        # a generator does not know which role it plays (one endpoint may be both): the server tells
        if error.role is None:
            error.role = self.role
        self.metrics.backend_errors.labels(self.role, type(error).__name__).inc()

    def _done(self, t0: float) -> None:
        self.metrics.backend_latency.labels(self.role).observe(time.perf_counter() - t0)


class RoleGenerator(_Tagged):
    """A generator whose failures say which role it was playing."""

    def __init__(self, inner: Generator, role: Role, metrics: Metrics) -> None:
        self.inner, self.role, self.metrics = inner, role, metrics
        self.model = inner.model

    async def generate_step(self, request: StepRequest) -> Generation:
        t0 = time.perf_counter()
        try:
            generation = await self.inner.generate_step(request)
        except BackendError as e:
            self._failed(e)
            raise
        self._done(t0)
        return generation

    async def aclose(self) -> None:
        return None  # the engine (or ``Backends.aclose``) closes the inner generator once


class RoleScorer(_Tagged):
    """A scorer whose failures are tagged ``scorer``."""

    def __init__(self, inner: Scorer, metrics: Metrics) -> None:
        self.inner, self.role, self.metrics = inner, "scorer", metrics
        self.name = inner.name

    async def score(self, problem: Problem, steps: Sequence[Step]) -> Scores:
        t0 = time.perf_counter()
        try:
            scores = await self.inner.score(problem, steps)
        except BackendError as e:
            self._failed(e)
            raise
        self._done(t0)
        return scores

    async def aclose(self) -> None:
        return None


async def probe(client: httpx.AsyncClient, url: str | None) -> dict[str, Any]:
    """Whether the server at ``url`` answers at all (any status below 500). No URL: an in-process backend."""
    if url is None:
        return {"reachable": True, "detail": "in process"}
    try:
        response = await client.get(url)
    except httpx.HTTPError as e:
        return {"reachable": False, "url": url, "detail": f"cannot reach: {type(e).__name__}"}
    return {"reachable": response.status_code < 500, "url": url, "detail": f"HTTP {response.status_code}"}
