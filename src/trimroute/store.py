"""A content-addressed call cache in SQLite, shared by the generator and scorer cache wrappers.

Every backend call is cacheable by the hash of its exact request (STYLE.md §13). ``CallStore`` keeps
``key -> JSON`` in one SQLite file (WAL, so several processes can share it), runs every database
operation on one dedicated thread (the event loop never blocks, and one connection is never used from
two threads at once), and coalesces identical requests that are in flight at the same time: the second
caller waits for the first call instead of making its own. Hits, coalesced waits and misses are counted
per namespace (``weak``, ``strong``, ``scorer``).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from trimroute.errors import ConfigError

__all__ = ["CacheStats", "CallStore", "request_key"]

T = TypeVar("T")
_SCHEMA = "CREATE TABLE IF NOT EXISTS calls (key TEXT PRIMARY KEY, value TEXT NOT NULL)"


def request_key(request: Mapping[str, Any]) -> str:
    """SHA-256 of the canonical JSON of a request description (key order does not matter)."""
    blob = json.dumps(request, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


@dataclass
class CacheStats:
    """Counts for one namespace. ``hits`` includes ``coalesced`` (waits on an identical in-flight call);
    ``misses`` are the calls really made. Without the cache every request would have been a call."""

    hits: int = 0
    coalesced: int = 0
    misses: int = 0

    @property
    def requests(self) -> int:
        return self.hits + self.misses

    def to_dict(self) -> dict[str, int]:
        return {"requests": self.requests, "hits": self.hits, "coalesced": self.coalesced, "misses": self.misses}

    def add(self, counts: Mapping[str, int]) -> None:
        """Add counts made elsewhere (a Ray worker's ``to_dict`` delta)."""
        self.hits += counts.get("hits", 0)
        self.coalesced += counts.get("coalesced", 0)
        self.misses += counts.get("misses", 0)


class _OwnerCancelled(Exception):
    """The caller making a call was cancelled; callers waiting on it make the call themselves."""


class CallStore:
    """``key -> JSON value`` in SQLite with in-flight coalescing. Use from one event loop.

    Args:
        path: the SQLite file (created with its parent folder).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ConfigError(f"cannot create the cache folder {str(self.path.parent)!r}: {e.strerror}") from None
        self._db = ThreadPoolExecutor(max_workers=1, thread_name_prefix="trim-cache")
        self._conn: sqlite3.Connection = self._db.submit(self._connect).result()
        self._inflight: dict[str, asyncio.Future[Any]] = {}
        self.stats: dict[str, CacheStats] = {}

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(self.path, check_same_thread=False, timeout=30.0)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(_SCHEMA)
            conn.commit()
        except sqlite3.DatabaseError as e:
            raise ConfigError(
                f"cannot use {str(self.path)!r} as a call cache ({e}); pass another --cache path"
            ) from None
        return conn

    def _get(self, key: str) -> str | None:
        row = self._conn.execute("SELECT value FROM calls WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def _put(self, key: str, value: str) -> None:
        self._conn.execute("INSERT OR REPLACE INTO calls (key, value) VALUES (?, ?)", (key, value))
        self._conn.commit()

    def _put_many(self, rows: Sequence[tuple[str, str]]) -> None:
        self._conn.executemany("INSERT OR REPLACE INTO calls (key, value) VALUES (?, ?)", rows)
        self._conn.commit()

    async def put_many(self, rows: Sequence[tuple[str, str]]) -> None:
        """Store ``(key, JSON value)`` rows made elsewhere (a Ray worker's calls), so this process stays the
        only writer of its file."""
        if rows:
            await self._io(self._put_many, rows)

    async def _io(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._db, fn, *args)

    def stats_for(self, namespace: str) -> CacheStats:
        return self.stats.setdefault(namespace, CacheStats())

    async def get_or_call(
        self, namespace: str, key: str, call: Callable[[], Awaitable[dict[str, Any]]]
    ) -> dict[str, Any]:
        """The stored value of ``key``, or ``await call()`` stored under it (once, however many ask at once)."""
        while (pending := self._inflight.get(key)) is not None:
            try:
                value = await asyncio.shield(pending)
            except _OwnerCancelled:
                continue  # its caller went away; make the call here instead
            stats = self.stats_for(namespace)
            stats.hits += 1
            stats.coalesced += 1
            return value
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            stored = await self._io(self._get, key)
            if stored is not None:
                value = json.loads(stored)
                self.stats_for(namespace).hits += 1
            else:
                value = await call()
                await self._io(self._put, key, json.dumps(value, ensure_ascii=False))
                self.stats_for(namespace).misses += 1
        except asyncio.CancelledError:
            future.set_exception(_OwnerCancelled())
            future.exception()  # retrieved: nobody may be waiting, and that is fine
            raise
        except BaseException as e:
            future.set_exception(e)
            future.exception()
            raise
        else:
            future.set_result(value)
        finally:
            del self._inflight[key]
        return value

    def __len__(self) -> int:
        return self._db.submit(lambda: self._conn.execute("SELECT COUNT(*) FROM calls").fetchone()[0]).result()

    def close(self) -> None:
        self._db.submit(self._conn.close).result()
        self._db.shutdown()
