"""Prometheus metrics of the server (``GET /metrics``), in a registry of the app's own.

Escalation rate = ``rate(trim_escalations_total[5m]) / sum(rate(trim_steps_total[5m]))`` (the share of
accepted steps the strong model rewrote).
With ``--workers N`` each worker keeps its own counters: scrape the workers separately. On Ray Serve one
scrape returns every replica's series, each with a ``replica`` label (``merge_replicas``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

from trimroute.types import ROLES, Trajectory

__all__ = ["CONTENT_TYPE_LATEST", "Metrics", "merge_replicas"]

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("trim_requests", "Requests answered", ["endpoint", "status"], registry=r)
        self.latency = Histogram(
            "trim_request_latency_seconds",
            "Time to the full answer",
            ["endpoint"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.first_step = Histogram(
            "trim_first_step_seconds",
            "Time to the first accepted step (what a streaming client waits before text arrives)",
            ["endpoint"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge("trim_requests_in_flight", "Requests admitted and not finished", registry=r)
        self.steps = Counter("trim_steps", "Accepted steps by the role that wrote them", ["role"], registry=r)
        self.tokens = Counter("trim_tokens", "Tokens by role and kind", ["role", "kind"], registry=r)
        self.escalations = Counter("trim_escalations", "Steps rewritten by the strong model", registry=r)
        self.backend_errors = Counter("trim_backend_errors", "Failed backend calls", ["role", "error"], registry=r)
        self.backend_latency = Histogram(
            "trim_backend_latency_seconds", "Backend call latency", ["role"], buckets=_LATENCY_BUCKETS, registry=r
        )
        self.fallbacks = Counter("trim_scorer_fallbacks", "Requests served by the scorer-down fallback", registry=r)

    def observe(self, trajectory: Trajectory) -> None:
        """Count the steps and tokens of one finished request."""
        for step in trajectory.steps:
            self.steps.labels(step.role).inc()
        for role in ROLES:
            usage = getattr(trajectory.usage, role)
            self.tokens.labels(role, "prompt").inc(usage.prompt_tokens)
            self.tokens.labels(role, "generated").inc(usage.generated_tokens)
            self.tokens.labels(role, "discarded").inc(usage.discarded_tokens)
        # weak steps started before a decision and thrown away (engine.speculate)
        self.tokens.labels("weak", "speculative").inc(trajectory.usage.speculative.generated_tokens)
        # the strong server's prefix-cache warm-ups (engine.shadow_prefill)
        self.tokens.labels("strong", "prefill").inc(trajectory.usage.prefill.prompt_tokens)
        self.escalations.inc(trajectory.escalations)

    def render(self) -> bytes:
        return generate_latest(self.registry)


def merge_replicas(texts: Mapping[str, bytes], more: Iterable[Metric] = ()) -> bytes:
    """One exposition of several replicas' ``/metrics`` texts (replica id -> text), each series with a
    ``replica`` label (sums over replicas are ``sum without (replica) (...)`` in PromQL), then ``more``."""
    registry = CollectorRegistry()
    registry.register(_Labelled(texts))
    registry.register(_Given(list(more)))
    return generate_latest(registry)


class _Given(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterable[Metric]:
        return self.families


class _Labelled(Collector):
    def __init__(self, texts: Mapping[str, bytes]) -> None:
        self.texts = texts

    def collect(self) -> Iterable[Metric]:
        merged: dict[str, Metric] = {}
        for replica, text in sorted(self.texts.items()):
            for family in text_string_to_metric_families(text.decode()):
                into = merged.setdefault(family.name, Metric(family.name, family.documentation, family.type))
                into.samples += [
                    Sample(s.name, {**s.labels, "replica": replica}, s.value, s.timestamp, s.exemplar)
                    for s in family.samples
                ]
        return merged.values()
