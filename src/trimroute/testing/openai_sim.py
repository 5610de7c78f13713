"""A simulated OpenAI-compatible model server with a set latency, in a subprocess (tests and benchmarks
of the server under load: ``bench/serve_load.py``, ``bench/serve_ray.py``, the Ray Serve tests).

Every ``/v1/completions`` call is answered after ``latency_s`` with one final step (``\\boxed{42}``), so a
pass-through request (model ``weak``) is one backend call of known duration. ``GET /stats`` says how
many completions were asked for (a request retried elsewhere is asked for twice).

    python -m trimroute.testing.openai_sim --port 8001 --latency-ms 1000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from trimroute.testing.llama_server import free_port

__all__ = ["ANSWER", "SimulatedServer", "simulated_openai_app"]

ANSWER = "So the answer is \\boxed{42}."


def simulated_openai_app(latency_s: float) -> Any:
    """The ASGI app: ``/v1/models`` at once, completions after ``latency_s``, ``/stats``."""
    models = json.dumps({"object": "list", "data": [{"id": "sim", "object": "model"}]}).encode()
    completion = json.dumps({
        "id": "sim", "object": "text_completion", "created": 0, "model": "sim",
        "choices": [{"index": 0, "text": ANSWER, "finish_reason": "stop", "logprobs": None}],
        "usage": {"prompt_tokens": 40, "completion_tokens": 9, "total_tokens": 49},
    }).encode()  # fmt: skip
    asked = 0

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        nonlocal asked
        more = True
        while more:
            message = await receive()
            more = message.get("more_body", False)
        if scope["path"].endswith("/models"):
            body = models
        elif scope["path"] == "/stats":
            body = json.dumps({"completions": asked}).encode()
        else:
            asked += 1
            await asyncio.sleep(latency_s)
            body = completion
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})

    return app


class SimulatedServer:
    """``python -m trimroute.testing.openai_sim`` on a free loopback port; ``base_url`` ends in ``/v1``."""

    def __init__(self, latency_s: float, log_path: Path) -> None:
        self.latency_s, self.log_path = latency_s, log_path
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self._proc: subprocess.Popen[bytes] | None = None

    def completions(self) -> int:
        """Completions asked for so far."""
        return int(httpx.get(f"http://127.0.0.1:{self.port}/stats").json()["completions"])

    def __enter__(self) -> SimulatedServer:
        cmd = [sys.executable, "-m", __name__, "--port", str(self.port), "--latency-ms", str(1000 * self.latency_s)]
        with open(self.log_path, "wb") as out:
            self._proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and self._proc.poll() is None:
            try:
                httpx.get(f"{self.base_url}/models").raise_for_status()
                return self
            except httpx.TransportError:
                time.sleep(0.1)
        self.__exit__(None, None, None)
        raise RuntimeError(f"the simulated server did not start:\n{self.log_path.read_text()[-2000:]}")

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(timeout=15)
            self._proc = None


def main() -> None:
    ap = argparse.ArgumentParser(description="a simulated OpenAI-compatible server with a set latency")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--latency-ms", type=float, default=1000.0)
    args = ap.parse_args()
    import uvicorn

    app = simulated_openai_app(args.latency_ms / 1000)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", lifespan="off")


if __name__ == "__main__":
    main()
