"""Which replica of a model server takes the next request: least outstanding, problem affinity, health.

A role's backend may list several base URLs, replicas of the same model (``base_urls`` in its config).
``Replicas`` holds their state and makes every choice; ``trimroute.endpoint`` does the I/O. No I/O here,
and time comes from ``clock``, so the rules are tested with a fake clock.

- **Least outstanding**: a request without a known affinity goes to the healthy replica with the fewest
  requests in flight (ties: the one picked least often, so an idle pool alternates).
- **Affinity**: every step of a TRIM problem re-sends the same prompt plus one more step, so the replica
  that served the previous step holds it in its prefix cache. A request names its affinity key (the
  generator: a hash of the prompt before the solution; a scorer: the question) and stays on the replica
  its key first went to while that replica is healthy. Keys are pinned when first seen, to the
  least-loaded replica, so problems (not requests) are what gets balanced.
- **Health**: a replica that cannot be reached is taken out of service; after ``backoff_s * 2**(n - 1)``
  (``n`` consecutive failures, capped at ``max_backoff_s``) it is due for a probe, and a probe or request
  that succeeds puts it back. Its pinned keys move to other replicas and stay there (their caches are
  warm now). When every replica is out, requests go to the one due soonest: with one replica this is
  plain retrying.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

__all__ = ["Replica", "Replicas", "affinity_key"]


def affinity_key(*texts: str) -> str:
    """A short key for what a replica's prefix cache holds: a hash of ``texts``."""
    h = hashlib.blake2b(digest_size=16)
    for text in texts:
        h.update(text.encode() + b"\x00")
    return h.hexdigest()


@dataclass(eq=False)
class Replica:
    """One base URL and what the pool knows about it."""

    base_url: str
    outstanding: int = 0  # requests in flight
    picks: int = 0
    failures: int = 0  # consecutive failures to connect
    down_until: float | None = None  # out of service; due for a probe from this time on
    probing: bool = False
    model_checked: bool = False

    @property
    def healthy(self) -> bool:
        return self.down_until is None


class Replicas:
    """The replicas of one role's server and the rules that spread requests across them.

    Args:
        base_urls: one or more distinct URLs.
        affinity: keep a key on its replica while it is healthy (off: least outstanding only).
        backoff_s, max_backoff_s: how long a replica that cannot be reached stays out before a probe.
        max_keys: affinity keys remembered (least recently used ones are forgotten).
    """

    def __init__(
        self,
        base_urls: Sequence[str],
        *,
        affinity: bool = True,
        backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not base_urls:
            raise ValueError("Replicas needs at least one base URL")
        self.all = tuple(Replica(url) for url in base_urls)
        self.affinity = affinity and len(self.all) > 1
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.max_keys = max_keys
        self.clock = clock
        self._pinned: OrderedDict[str, Replica] = OrderedDict()

    def __len__(self) -> int:
        return len(self.all)

    def healthy(self) -> list[Replica]:
        return [r for r in self.all if r.healthy]

    def pick(self, key: str | None = None) -> Replica:
        """The replica for a request with affinity ``key`` (None: no affinity)."""
        pinned = self._pinned.get(key) if key is not None and self.affinity else None
        if pinned is not None and pinned.healthy:
            self._pinned.move_to_end(key)  # type: ignore[arg-type]  # key is not None when pinned is set
            chosen = pinned
        else:
            healthy = self.healthy()
            if healthy:
                chosen = min(healthy, key=lambda r: (r.outstanding, r.picks))
            else:  # all out: the one due soonest (a single replica is simply retried)
                chosen = min(self.all, key=lambda r: r.down_until or 0.0)
            if key is not None and self.affinity and chosen.healthy:
                self._pin(key, chosen)
        chosen.picks += 1
        return chosen

    @contextmanager
    def serving(self, replica: Replica) -> Iterator[None]:
        """Count a request as outstanding on ``replica`` while it runs."""
        replica.outstanding += 1
        try:
            yield
        finally:
            replica.outstanding -= 1

    def failed(self, replica: Replica) -> None:
        """``replica`` could not be reached: out of service until its next probe is due."""
        replica.failures += 1
        delay = min(self.backoff_s * 2 ** (replica.failures - 1), self.max_backoff_s)
        replica.down_until = self.clock() + delay

    def succeeded(self, replica: Replica) -> None:
        """``replica`` answered: back in service."""
        replica.failures = 0
        replica.down_until = None

    def due(self) -> list[Replica]:
        """Replicas out of service whose probe is due and not yet running; they are marked as probing."""
        now = self.clock()
        out = [r for r in self.all if r.down_until is not None and r.down_until <= now and not r.probing]
        for r in out:
            r.probing = True
        return out

    def _pin(self, key: str, replica: Replica) -> None:
        self._pinned[key] = replica
        self._pinned.move_to_end(key)
        while len(self._pinned) > self.max_keys:
            self._pinned.popitem(last=False)
