"""How many replicas ``trim serve --ray`` runs: a fixed number, or autoscaled between two bounds. Pure
(no Ray import), so bad flags fail in one line before a cluster is reached."""

from __future__ import annotations

from typing import Any

from trimroute.errors import ConfigError

__all__ = ["parse_autoscale", "replica_scaling"]


def parse_autoscale(text: str) -> tuple[int, int]:
    """``"1:4"`` -> ``(1, 4)``."""
    low, sep, high = text.partition(":")
    try:
        if sep:
            return int(low), int(high)
    except ValueError:
        pass
    raise ConfigError(f"--autoscale takes MIN:MAX, e.g. 1:4, got {text!r}")


def replica_scaling(replicas: int, autoscale: tuple[int, int] | None, max_pending: int) -> dict[str, Any]:
    """Ray Serve deployment options for the replicas. Autoscaling aims at a quarter of ``max_pending``
    requests per replica: a replica waits on its backends, so it holds many requests at once."""
    if replicas < 1:
        raise ConfigError(f"--replicas must be >= 1, got {replicas}")
    if autoscale is None:
        return {"num_replicas": replicas}
    low, high = autoscale
    if not 0 <= low <= high or high < 1:
        raise ConfigError(f"--autoscale MIN:MAX needs 0 <= MIN <= MAX and MAX >= 1, got {low}:{high}")
    target = max(1, max_pending // 4)
    return {"autoscaling_config": {"min_replicas": low, "max_replicas": high, "target_ongoing_requests": target}}
