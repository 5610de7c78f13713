"""The pieces of ``trim eval --ray`` that need no cluster: sharding, concurrency shares, the worker's cache."""

from __future__ import annotations

import sqlite3
import sys
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from trimroute.cli import app
from trimroute.cluster import require_ray
from trimroute.config import sim_config
from trimroute.errors import ConfigError
from trimroute.eval.ray_shards import ShardStore, shard_config, shard_of
from trimroute.store import CallStore
from trimroute.testing.llama_server import free_port


def test_a_problem_always_lands_on_the_same_shard_and_shards_are_balanced() -> None:
    assert shard_of("p17", 4) == shard_of("p17", 4)
    counts = Counter(shard_of(f"sim-{i}", 4) for i in range(4000))
    assert set(counts) == {0, 1, 2, 3} and max(counts.values()) < 1.1 * 1000


@pytest.mark.parametrize("shards", [1, 2, 3, 8])
def test_each_shard_gets_its_share_of_every_concurrency_limit(shards: int) -> None:
    config = sim_config("qwen1.5b-7b")
    parts = [shard_config(config, k, shards).engine for k in range(shards)]
    assert sum(p.concurrency for p in parts) == config.engine.concurrency
    for role, limit in config.engine.backend_concurrency.items():
        assert sum(p.backend_concurrency[role] for p in parts) == limit
    assert shard_config(config, 0, 1) == config


def test_a_shard_gets_at_least_one_of_each_when_there_are_more_shards_than_slots() -> None:
    engine = shard_config(sim_config("qwen1.5b-7b"), 11, 12).engine
    assert engine.concurrency == 1 and set(engine.backend_concurrency.values()) == {1}


async def test_the_worker_cache_reads_the_run_cache_and_hands_over_only_its_own_rows(tmp_path: Path) -> None:
    record = CallStore(tmp_path / "run.sqlite")
    await record.put_many([("old", '{"v": 1}')])
    shard = ShardStore(":memory:", tmp_path / "run.sqlite")  # as a worker opens it: no file of its own
    calls = []

    async def call(value: int) -> dict[str, int]:
        calls.append(value)
        return {"v": value}

    try:
        assert await shard.get_or_call("weak", "old", lambda: call(9)) == {"v": 1}  # from the run's cache
        assert await shard.get_or_call("weak", "new", lambda: call(2)) == {"v": 2}
        assert await shard.get_or_call("weak", "new", lambda: call(3)) == {"v": 2}
        assert calls == [2]
        assert await shard.drain() == [("new", '{"v": 2}')]
        assert await shard.drain() == []
        assert shard.stats["weak"].to_dict() == {"requests": 3, "hits": 2, "coalesced": 0, "misses": 1}
    finally:
        shard.close()
        record.close()
    with sqlite3.connect(tmp_path / "run.sqlite") as conn:  # the worker never writes the run's file
        assert conn.execute("SELECT key FROM calls").fetchall() == [("old",)]
    assert {p.name for p in tmp_path.iterdir()} <= {"run.sqlite", "run.sqlite-wal", "run.sqlite-shm"}


async def test_the_worker_cache_works_without_a_reachable_run_cache(tmp_path: Path) -> None:
    shard = ShardStore(tmp_path / "shard.sqlite", tmp_path / "elsewhere" / "run.sqlite")
    try:
        assert shard.record is None

        async def call() -> dict[str, int]:
            return {"v": 1}

        assert await shard.get_or_call("scorer", "k", call) == {"v": 1}
    finally:
        shard.close()


def test_missing_ray_is_one_line_naming_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    with pytest.raises(ConfigError, match=r"pip install 'trimroute\[ray\]'"):
        require_ray()


def test_eval_fails_at_once_where_no_cluster_listens(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    result = CliRunner().invoke(app, ["eval", "--sim", "qwen1.5b-7b", "--limit", "5", "--out", str(tmp_path / "run"),
                                      "--ray", f"127.0.0.1:{port}"])  # fmt: skip
    assert result.exit_code == 1 and f"no Ray cluster answers at '127.0.0.1:{port}'" in result.output


def test_eval_rejects_ray_workers_without_ray_and_live_with_ray(tmp_path: Path) -> None:
    base = ["eval", "--sim", "qwen1.5b-7b", "--limit", "5", "--out", str(tmp_path / "run")]
    result = CliRunner().invoke(app, [*base, "--ray-workers", "2"])
    assert result.exit_code == 1 and "--ray-workers takes a number >= 1 and needs --ray" in result.output
    result = CliRunner().invoke(app, [*base, "--ray", "127.0.0.1:1", "--live"])
    assert result.exit_code == 1 and "--live streams steps from this process" in result.output
