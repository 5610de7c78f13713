"""Shared fixtures for the whole session: ``llama_server`` (a real llama.cpp server with SmolLM2-135M-Instruct)
and ``ray_cluster`` (a real local Ray cluster)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from trimroute.testing.llama_server import LlamaServer, smollm2_path

if TYPE_CHECKING:
    from trimroute.testing.ray_cluster import LocalRayCluster


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    """``python -m llama_cpp.server`` on a free loopback port, serving SmolLM2 (model id ``.model``).

    ``.base_url`` ends in ``/v1``. ``stop()`` and ``start()`` restart it on the same port; a test that
    stops it must start it again before it returns. Fails (never skips) when llama_cpp is missing.
    """
    log = Path(tmp_path_factory.mktemp("llama-server")) / "server.log"
    server = LlamaServer(smollm2_path(), log_path=log)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[LocalRayCluster]:
    """A real local Ray cluster for the whole session: a head and one worker node of 1 CPU each, on a
    loopback address, under a private temp dir (``trimroute.testing.ray_cluster``); ``.address`` is what
    ``ray.init`` takes. Fails (never skips) when ray is missing. A test that kills the worker
    (``kill_worker(0)``) must ``add_worker()`` before it returns."""
    from trimroute.testing.ray_cluster import LocalRayCluster

    with LocalRayCluster(workers=1, cpus_per_node=1) as cluster:
        yield cluster
