"""The engine points of ``trim eval --ray``: problems sharded over Ray actors, trajectories streamed back.

The sweep (``eval.sweep``) and the driver (``runner.route``) stay as they are: ``RayShards.run`` has the
shape of ``Engine.run`` — problems and a policy in, finished trajectories out as they come — and ``route``
still writes the one trajectory file per point, resumes from it, and reports progress. Only where the
problems are solved changes:

- a problem always goes to the same shard (a hash of its id), and a shard is one long-lived actor with its
  own engine and call cache, so every point of one problem lands on one worker and the points share its
  prefixes as they do in one process;
- each actor's engine gets its share of every per-backend concurrency limit (and of ``engine.concurrency``),
  so the cluster as a whole keeps the configured bounds on each model server;
- an actor solves a chunk of its problems, grades them and returns them together with the cache rows and
  counters the chunk added. The driver adds the rows to the run's call cache before writing the
  trajectories, so it stays the only writer of that SQLite file and every saved trajectory's calls are in
  it; workers that can reach the file (one machine, a shared file system) read it, read-only, on a miss.

A killed actor is restarted by Ray and its unfinished chunk retried (``max_task_retries``); what it had
not returned was never written, so nothing is duplicated. A killed driver takes its actors with it; rerunning
the same command resumes from the trajectory files like a local run.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import sqlite3
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from trimroute.cluster import require_ray
from trimroute.config import RunConfig
from trimroute.data.grading import grade_trajectory
from trimroute.engine import StepCallback
from trimroute.errors import ConfigError, TrimError
from trimroute.policies.base import Policy
from trimroute.runner import build_engine
from trimroute.store import CallStore
from trimroute.types import Problem, Trajectory

__all__ = ["ChunkResult", "RayShards", "ShardStore", "ShardWorker", "shard_config", "shard_of"]

CHUNK_FACTOR = 4  # problems per chunk = this × the actor's share of engine.concurrency
TASK_RETRIES = 4  # retries of one chunk whose actor died, before the sweep fails (a rerun resumes)
READY_TIMEOUT_S = 300.0


def shard_of(problem_id: str, shards: int) -> int:
    """The shard of a problem: stable across runs and machines (not Python's salted ``hash``)."""
    digest = hashlib.blake2b(problem_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % shards


def _share(total: int, shard: int, shards: int) -> int:
    """Shard ``shard``'s part of ``total`` when it is split as evenly as integers allow (at least 1)."""
    return max(1, total // shards + (1 if shard < total % shards else 0))


def shard_config(config: RunConfig, shard: int, shards: int) -> RunConfig:
    """``config`` with this shard's share of the problems in flight and of every backend's concurrency."""
    engine = config.engine
    limits = {role: _share(n, shard, shards) for role, n in engine.backend_concurrency.items()}
    return replace(
        config,
        engine=replace(engine, concurrency=_share(engine.concurrency, shard, shards), backend_concurrency=limits),
    )


class ShardStore(CallStore):
    """A worker's call cache: its own SQLite database (``":memory:"`` in a worker), falling back to the run's
    cache file (opened read-only) on a miss; the rows it adds are kept in ``fresh`` until ``drain`` hands
    them to the driver."""

    def __init__(self, path: str | Path, record: str | Path | None) -> None:
        self.record = Path(record) if record is not None and Path(record).is_file() else None
        self.fresh: list[tuple[str, str]] = []
        self._record_conn: sqlite3.Connection | None = None
        super().__init__(path)

    def _connect(self) -> sqlite3.Connection:
        conn = super()._connect()
        if self.record is not None:
            try:
                uri = f"file:{self.record.resolve()}?mode=ro"
                self._record_conn = sqlite3.connect(uri, uri=True, check_same_thread=False, timeout=30.0)
            except sqlite3.Error:
                self._record_conn = None  # unreadable from here: calls are made again, with the same results
        return conn

    def _get(self, key: str) -> str | None:
        value = super()._get(key)
        if value is None and self._record_conn is not None:
            try:
                row = self._record_conn.execute("SELECT value FROM calls WHERE key = ?", (key,)).fetchone()
            except sqlite3.Error:
                return None
            value = row[0] if row else None
        return value

    def _put(self, key: str, value: str) -> None:
        super()._put(key, value)
        self.fresh.append((key, value))

    def _drain(self) -> list[tuple[str, str]]:
        rows, self.fresh = self.fresh, []
        return rows

    async def drain(self) -> list[tuple[str, str]]:
        """The rows added since the last drain (on the store's thread: no put runs meanwhile)."""
        return await self._io(self._drain)

    def close(self) -> None:
        if self._record_conn is not None:
            self._db.submit(self._record_conn.close).result()
        super().close()


@dataclass(frozen=True)
class ChunkResult:
    """What an actor returns for one chunk: graded trajectories, new cache rows, cache counters per role."""

    trajectories: list[Trajectory]
    rows: list[tuple[str, str]]
    stats: dict[str, dict[str, int]]


class ShardWorker:
    """The Ray actor of one shard: an engine built from its share of ``config``, behind its own cache."""

    def __init__(self, config: RunConfig, shard: int, shards: int, record: str | None, cache: bool) -> None:
        # in memory: an actor that dies (or is restarted by Ray) leaves no file behind on its node
        self.store = ShardStore(":memory:", record) if cache else None
        self.engine = build_engine(shard_config(config, shard, shards), cache=self.store)
        self.reported: dict[str, dict[str, int]] = {}

    def where(self) -> dict[str, Any]:
        """This actor's process and node (tests kill the one, benches report the other)."""
        import ray

        return {"pid": os.getpid(), "node": ray.get_runtime_context().get_node_id()}

    async def route(self, problems: list[Problem], policy: Policy) -> ChunkResult:
        trajectories = []
        async for trajectory in self.engine.run(problems, policy):
            trajectories.append(await asyncio.to_thread(grade_trajectory, trajectory))
        rows = await self.store.drain() if self.store is not None else []
        return ChunkResult(trajectories, rows, self._stats_since_last())

    def _stats_since_last(self) -> dict[str, dict[str, int]]:
        """Counters since the previous chunk returned: summed over chunks, every call counted once."""
        if self.store is None:
            return {}
        out = {}
        for role, stats in self.store.stats.items():
            now, was = stats.to_dict(), self.reported.get(role, {})
            out[role] = {k: v - was.get(k, 0) for k, v in now.items()}
            self.reported[role] = now
        return out

    async def close(self) -> ChunkResult:
        """Close the engine and hand over the rows and counters no chunk returned (calls that were still
        finishing when their chunk ended, e.g. a cancelled speculative step)."""
        await self.engine.aclose()
        rest = ChunkResult([], await self.store.drain() if self.store is not None else [], self._stats_since_last())
        if self.store is not None:
            self.store.close()
        return rest


class RayShards:
    """Solves problems on the actors of a Ray cluster; ``run`` has the shape of ``Engine.run``.

    Use ``await RayShards.start(...)``; ``aclose`` stops the actors. ``store`` is the driver's call cache
    (the run's ``cache.sqlite``) or None; ``workers`` defaults to one per node that has a CPU.
    """

    def __init__(self, actors: list[Any], chunk_size: int, store: CallStore | None) -> None:
        self.actors, self.chunk_size, self.store = actors, chunk_size, store

    @classmethod
    async def start(cls, config: RunConfig, store: CallStore | None, workers: int | None = None) -> RayShards:
        ray = require_ray()
        if workers is None:
            workers = sum(1 for n in ray.nodes() if n.get("Alive") and n.get("Resources", {}).get("CPU", 0) >= 1)
        if workers < 1:
            raise ConfigError("the Ray cluster has no node with a free CPU for a trim worker; add one (ray start)")
        actor_class = ray.remote(ShardWorker).options(
            num_cpus=1, max_restarts=-1, max_task_retries=TASK_RETRIES, max_concurrency=2,
            scheduling_strategy="SPREAD",
        )  # fmt: skip
        record = str(store.path.resolve()) if store is not None else None
        actors = [actor_class.remote(config, k, workers, record, store is not None) for k in range(workers)]
        shards = cls(actors, CHUNK_FACTOR * _share(config.engine.concurrency, 0, workers), store)
        try:
            await asyncio.wait_for(asyncio.gather(*(a.where.remote() for a in actors)), READY_TIMEOUT_S)
        except asyncio.TimeoutError:
            await shards.aclose()
            raise ConfigError(
                f"the Ray cluster did not place {workers} trim workers of 1 CPU each in {READY_TIMEOUT_S:.0f} s; "
                "start more nodes or pass fewer --ray-workers"
            ) from None
        return shards

    async def where(self) -> list[dict[str, Any]]:
        """Each shard's process id and node id, by shard."""
        return list(await asyncio.gather(*(a.where.remote() for a in self.actors)))

    def chunks(self, problems: Iterable[Problem]) -> list[tuple[int, list[Problem]]]:
        """``(shard, problems)`` chunks, the shards interleaved so every actor starts at once."""
        parts: list[list[Problem]] = [[] for _ in self.actors]
        for p in problems:
            parts[shard_of(p.id, len(self.actors))].append(p)
        per_shard = [
            [(k, part[i : i + self.chunk_size]) for i in range(0, len(part), self.chunk_size)]
            for k, part in enumerate(parts)
        ]
        longest = max((len(c) for c in per_shard), default=0)
        return [c[i] for i in range(longest) for c in per_shard if i < len(c)]

    async def run(
        self, problems: Iterable[Problem], policy: Policy, on_step: StepCallback | None = None
    ) -> AsyncIterator[Trajectory]:
        """Yield each problem's graded trajectory as its chunk comes back (``on_step`` is not streamed from
        workers: ``trim eval --ray`` rejects ``--live``)."""
        ray = require_ray()
        policy_ref = ray.put(policy)  # sent once, not with every chunk
        pending = {asyncio.ensure_future(self._chunk(k, chunk, policy_ref)) for k, chunk in self.chunks(problems)}
        seen: set[str] = set()
        try:
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    result = task.result()
                    await self._record(result)
                    for trajectory in result.trajectories:
                        if trajectory.problem.id not in seen:  # a retried chunk is returned once, but be sure
                            seen.add(trajectory.problem.id)
                            yield trajectory
        finally:
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def _chunk(self, shard: int, problems: list[Problem], policy_ref: Any) -> ChunkResult:
        ray = require_ray()
        try:
            result: ChunkResult = await self.actors[shard].route.remote(problems, policy_ref)
        except ray.exceptions.RayTaskError as e:
            if isinstance(e.cause, TrimError):
                raise e.cause from None  # a backend or config error on the worker: the same one-line message
            raise
        except ray.exceptions.RayActorError as e:
            raise TrimError(
                f"trim worker {shard} died {TASK_RETRIES + 1} times ({type(e).__name__}); "
                "rerun the same command to resume"
            ) from None
        return result

    async def _record(self, result: ChunkResult) -> None:
        """Cache rows first, then the trajectories are written: a saved trajectory's calls are all cached."""
        if self.store is None:
            return
        await self.store.put_many(result.rows)
        for role, counts in result.stats.items():
            self.store.stats_for(role).add(counts)

    async def aclose(self) -> None:
        ray = require_ray()
        closing = [a.close.remote() for a in self.actors]
        try:
            rests = await asyncio.wait_for(asyncio.gather(*closing, return_exceptions=True), 30.0)
        except asyncio.TimeoutError:
            rests = []  # killed below all the same
        for rest in rests:
            if isinstance(rest, ChunkResult):
                await self._record(rest)
        for actor in self.actors:
            ray.kill(actor)
