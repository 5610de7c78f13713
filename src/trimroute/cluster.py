"""Ray, behind the ``ray`` extra: the one place that imports it for ``trim eval --ray`` and ``trim pomdp solve --ray``.

``connect(address)`` joins a running cluster (``ray start`` on each machine, docs/ray.md) and returns
whether this call connected, so the caller disconnects only what it connected. ``ray_map`` runs one
function over a list of argument tuples as Ray tasks (``trim pomdp solve --ray``: one task per λ).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from types import ModuleType
from typing import Any, TypeVar

from trimroute.errors import ConfigError, TrimError

__all__ = ["connect", "disconnect", "ray_map", "require_ray"]

R = TypeVar("R")


def require_ray() -> ModuleType:
    """The ``ray`` module, or a one-line ``ConfigError`` saying how to install it."""
    try:
        import ray
    except ImportError:
        raise ConfigError("Ray is not installed: pip install 'trimroute[ray]'") from None
    return ray


def connect(address: str) -> bool:
    """Join the Ray cluster at ``address`` (``HOST:PORT`` or ``auto``); False when already connected."""
    ray = require_ray()
    if ray.is_initialized():
        return False
    try:
        # log_to_driver off: the workers' own logs stay in the cluster's log folder, not in trim's output
        ray.init(address=address, log_to_driver=False, logging_level=logging.ERROR, configure_logging=False)
    except (ConnectionError, ValueError, RuntimeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"cannot join the Ray cluster at {address!r}: {first}") from None
    return True


def disconnect(connected: bool) -> None:
    """Undo ``connect`` when it connected."""
    if connected:
        require_ray().shutdown()


def ray_map(fn: Callable[..., R], calls: Sequence[tuple[Any, ...]], address: str) -> Iterator[R]:
    """``fn(*args)`` for each ``args`` of ``calls`` as parallel Ray tasks of one CPU; results in order, each
    as soon as it and those before it are done. Disconnects at the end when it connected."""
    ray = require_ray()
    connected = connect(address)
    try:
        task = ray.remote(num_cpus=1)(fn)
        refs = [task.remote(*args) for args in calls]
        for ref in refs:
            try:
                yield ray.get(ref)
            except ray.exceptions.RayTaskError as e:
                if isinstance(e.cause, TrimError):
                    raise e.cause from None  # the task's own one-line error
                raise
    finally:
        disconnect(connected)
