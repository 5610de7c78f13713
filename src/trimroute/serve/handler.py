"""Serving one request: admission, router -> policy, per-request limits, the engine, the scorer-down
fallback, the timeout, metrics and the request log. Knows nothing of HTTP; the routes call it.

The routing itself is ``Engine.solve`` (the one routing loop): ``on_step`` fires for each accepted step
(a regenerated step once the strong model wrote it), which is what streaming sends.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable
from typing import Any

import httpx

from trimroute.engine import Engine
from trimroute.errors import BackendError
from trimroute.policies import Policy
from trimroute.serve.backends import Backends, probe
from trimroute.serve.errors import ApiError, to_api_error
from trimroute.serve.logs import logger
from trimroute.serve.metrics import Metrics
from trimroute.serve.protocol import Fallback, RouteParams
from trimroute.serve.routers import Routers, policy_from_spec
from trimroute.serve.settings import ServerConfig
from trimroute.types import Problem, Step, Trajectory

__all__ = ["RoutingHandler"]

OnStep = Callable[[Step], None]


class RoutingHandler:
    """Routes requests through one shared engine (one set of backends, one set of concurrency bounds)."""

    def __init__(self, config: ServerConfig, backends: Backends | None = None) -> None:
        self.config = config
        self.settings = config.serve
        self.routers = Routers(config.run.policy, self.settings.routers)  # a bad spec fails before any client is made
        self.backends = backends or Backends.from_config(config.run)
        self.metrics = Metrics()
        self.engine = self.backends.engine(config.run, self.metrics)
        fallback = self.settings.scorer_fallback
        self.fallback: Policy | None = None if fallback == "none" else policy_from_spec(fallback)
        self._scorer_down_until = 0.0
        self._scorer_down_reason = ""
        self._pending = 0
        self._probe_client = httpx.AsyncClient(timeout=self.settings.health_timeout_s)

    async def aclose(self) -> None:
        await self._probe_client.aclose()
        await self.backends.aclose()

    async def solve(self, params: RouteParams, on_step: OnStep | None = None) -> tuple[Trajectory, Fallback | None]:
        """Route one request to the end of its solution; errors come out as ``ApiError``."""
        if self._pending >= self.settings.max_pending:
            self.metrics.requests.labels(params.kind, "503").inc()
            raise ApiError(
                503,
                f"server busy: {self._pending} requests in flight (serve.max_pending); retry shortly",
                "server_error",
                "overloaded",
                headers={"Retry-After": "1"},
            )
        self._pending += 1
        self.metrics.in_flight.inc()
        t0 = time.perf_counter()
        status, trajectory, fallback, error = "200", None, None, None
        try:
            policy = self.routers.resolve(params.model, params.policy)
            engine = self._engine_for(params)
            timeout = self.settings.request_timeout_s
            try:
                first_step = self._first_step_timer(params.kind, t0, on_step)
                trajectory, fallback = await asyncio.wait_for(self._route(engine, params, policy, first_step), timeout)
            except asyncio.TimeoutError:
                raise ApiError(
                    504, f"the request did not finish within {timeout:g}s (serve.request_timeout_s)", "timeout_error",
                    "timeout",
                ) from None  # fmt: skip
            return trajectory, fallback
        except asyncio.CancelledError:
            status = "499"  # the client went away; its backend calls were cancelled
            raise
        except Exception as e:
            api_error = to_api_error(e)
            status, error = str(api_error.status), api_error.message
            if api_error is e:
                raise
            if api_error.status >= 500 and not isinstance(e, BackendError):
                logger.exception("unexpected error", extra={"fields": {"id": params.id}})
            raise api_error from e
        finally:
            latency = time.perf_counter() - t0
            self._pending -= 1
            self.metrics.in_flight.dec()
            self.metrics.requests.labels(params.kind, status).inc()
            self.metrics.latency.labels(params.kind).observe(latency)
            if trajectory is not None:
                self.metrics.observe(trajectory)
            self._log(params, status, latency, trajectory, fallback, error)

    def _first_step_timer(self, endpoint: str, t0: float, on_step: OnStep | None) -> OnStep:
        """``on_step``, observing the time to the request's first accepted step on the way."""
        seen = False

        def step(s: Step) -> None:
            nonlocal seen
            if not seen:
                seen = True
                self.metrics.first_step.labels(endpoint).observe(time.perf_counter() - t0)
            if on_step is not None:
                on_step(s)

        return step

    async def health(self) -> dict[str, Any]:
        """Reachability of each backend (probed over HTTP when it has a ``base_url``; with several replicas,
        reachable when one is, each replica's probe listed)."""
        run = self.config.run
        urls: dict[str, tuple[str | None, ...]] = {
            "weak": tuple(u.rstrip("/") + "/models" for u in run.weak.urls) or (None,),
            "strong": tuple(u.rstrip("/") + "/models" for u in run.strong.urls) or (None,),
        }
        if self.backends.scorer is not None:
            urls["scorer"] = run.scorer.urls or (None,)
        probes = await asyncio.gather(
            *(asyncio.gather(*(probe(self._probe_client, u) for u in role)) for role in urls.values())
        )
        results = [
            found[0] if len(found) == 1 else {"reachable": any(r["reachable"] for r in found), "replicas": found}
            for found in probes
        ]
        backends = dict(zip(urls, results, strict=True))
        report: dict[str, Any] = {
            "status": "ok" if all(r["reachable"] for r in results) else "degraded",
            "backends": backends,
        }
        if self.fallback is not None and time.monotonic() < self._scorer_down_until:
            report["scorer_fallback"] = {"policy": self.fallback.name, "reason": self._scorer_down_reason}
        return report

    def _engine_for(self, params: RouteParams) -> Engine:
        """The shared engine under this request's limits: a request may lower the configured ones, not raise them."""
        cfg = self.engine.config
        changes: dict[str, Any] = {}
        for field, value, limit in (
            ("max_solution_tokens", params.max_tokens, cfg.max_solution_tokens),
            ("max_steps", params.max_steps, cfg.max_steps),
        ):
            if value is None:
                continue
            if value > limit:
                param = "max_tokens" if field == "max_solution_tokens" else "trim.max_steps"
                raise ApiError(400, f"{param}={value} exceeds this server's limit of {limit}", param=param)
            changes[field] = value
        if params.budget is not None:
            changes["budget"] = params.budget if cfg.budget is None else min(params.budget, cfg.budget)
        if params.seed is not None:
            changes["seed"] = params.seed
        return self.engine.with_config(dataclasses.replace(cfg, **changes)) if changes else self.engine

    async def _route(
        self, engine: Engine, params: RouteParams, policy: Policy, on_step: OnStep | None
    ) -> tuple[Trajectory, Fallback | None]:
        """``engine.solve``, or the fallback policy while the scorer is down (``serve.scorer_fallback``)."""
        uses_scorer = policy.needs_scores and policy.fixed_action is None
        if uses_scorer and self.fallback is not None and time.monotonic() < self._scorer_down_until:
            return await self._fall_back(engine, self.fallback, params.problem, on_step, self._scorer_down_reason)
        emitted = 0

        def accepted(problem: Problem, step: Step) -> None:
            nonlocal emitted
            emitted += 1
            if on_step is not None:
                on_step(step)

        try:
            return await engine.solve(params.problem, policy, accepted), None
        except BackendError as e:
            if e.role != "scorer" or not uses_scorer:
                raise
            # stay on the fallback for a while instead of paying the scorer's retries on every request
            self._scorer_down_until = time.monotonic() + self.settings.scorer_retry_s
            self._scorer_down_reason = f"scorer unavailable: {e}"
            if self.fallback is None or emitted:  # steps already streamed cannot be taken back
                raise
            return await self._fall_back(engine, self.fallback, params.problem, on_step, self._scorer_down_reason)

    async def _fall_back(
        self, engine: Engine, policy: Policy, problem: Problem, on_step: OnStep | None, reason: str
    ) -> tuple[Trajectory, Fallback]:
        self.metrics.fallbacks.inc()
        callback = None if on_step is None else (lambda _problem, step: on_step(step))
        trajectory = await engine.solve(problem, policy, callback)
        return trajectory, Fallback(policy.name, reason)

    def _log(
        self,
        params: RouteParams,
        status: str,
        latency: float,
        trajectory: Trajectory | None,
        fallback: Fallback | None,
        error: str | None,
    ) -> None:
        fields: dict[str, Any] = {
            "id": params.id,
            "endpoint": params.kind,
            "model": params.model,
            "status": int(status),
            "latency_ms": round(latency * 1000, 1),
            "stream": params.stream,
        }
        if trajectory is not None:
            fields |= {
                "policy": trajectory.policy,
                "steps": len(trajectory.steps),
                "escalations": trajectory.escalations,
                "stop_reason": trajectory.stop_reason.value,
                "usage": trajectory.usage.to_dict(),
            }
        if fallback is not None:
            fields["fallback"] = fallback.policy
        if error is not None:
            fields["error"] = error
        if self.settings.log_prompts:
            fields["prompt"] = params.problem.text
            fields["history"] = list(params.problem.meta.get("history", ()))
            if trajectory is not None:
                fields["answer"] = trajectory.solution
        logger.info("request", extra={"fields": fields})
