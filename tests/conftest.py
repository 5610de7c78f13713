"""Shared fixtures. ``llama_server``: a real llama.cpp server with SmolLM2-135M-Instruct for the whole session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from trimroute.testing.llama_server import LlamaServer, smollm2_path


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
