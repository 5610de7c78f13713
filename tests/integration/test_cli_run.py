"""``trim run`` end to end against the real llama.cpp server: one problem, a dataset, resume after SIGKILL,
and bad input giving one-line errors with a non-zero exit."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from trimroute.cli import app
from trimroute.prompts import is_final
from trimroute.testing.llama_server import LlamaServer, free_port
from trimroute.trajectories import read_trajectories
from trimroute.types import FinishReason

pytestmark = pytest.mark.slow

GSM8K = Path(__file__).resolve().parents[3] / "shared" / "data" / "gsm8k_test.jsonl"
SHORT = ["--max-steps", "3", "--set", "engine.max_step_tokens=24"]


def endpoints(server: LlamaServer, scorer: bool = False) -> list[str]:
    args = [
        "--weak-url", server.base_url, "--weak-model", server.model,
        "--strong-url", server.base_url, "--strong-model", server.model,
        "--set", "strong.temperature=0.2",  # a distinct config: the strong role gets its own client
    ]  # fmt: skip
    if scorer:
        args += ["--scorer", "judge", "--scorer-url", server.base_url, "--scorer-model", server.model]
    return args


def invoke(*args: str):
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def test_one_problem_prints_weak_and_strong_steps_with_scores(llama_server: LlamaServer, tmp_path: Path) -> None:
    out = tmp_path / "one.jsonl"
    r = invoke(
        "run", "--problem", "Tom has 3 apples and buys 4 more. How many apples does he have?",
        *endpoints(llama_server, scorer=True), "--policy", "thr", "--threshold", "0.99", "--budget", "40",
        *SHORT, "--out", str(out),
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    (t,) = list(read_trajectories(out))
    roles = {s.role for s in t.steps}
    assert "strong" in roles  # k = 0.99 escalates the first low-confidence proposal
    assert "weak step scored" in r.output and "rewritten by strong" in r.output
    assert t.usage.scorer.calls >= 1 and t.strong_tokens <= 40


def test_keep_final_rewrites_every_step_but_the_one_ending_the_solution(
    llama_server: LlamaServer, tmp_path: Path
) -> None:
    out = tmp_path / "kf.jsonl"
    r = invoke(
        "run", "--problem", "Tom has 3 apples and buys 4 more. How many apples does he have?",
        *endpoints(llama_server, scorer=True), "--policy", "thr:1:keep-final", "--max-steps", "4",
        "--set", "engine.max_step_tokens=64", "--out", str(out),
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    (t,) = list(read_trajectories(out))
    assert t.policy == "thr:1:keep-final" and t.discarded, t.steps  # k = 1 rewrites every proposal it may
    # a rewritten proposal never ended the solution (an answer, end of text or the length cap)
    assert all(d.finish_reason is FinishReason.STOP and not is_final(d.text) for d in t.discarded)
    assert all(s.role == "strong" for s in t.steps[:-1])


def test_dataset_run_resumes_after_sigkill_with_every_problem_once(llama_server: LlamaServer, tmp_path: Path) -> None:
    out = tmp_path / "run.jsonl"
    cmd = [
        sys.executable, "-m", "trimroute", "run", "--dataset", str(GSM8K), "--limit", "6", "--policy", "weak",
        "--concurrency", "1", *endpoints(llama_server), *SHORT, "--out", str(out),
    ]  # fmt: skip
    log = (tmp_path / "killed.log").open("wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "NO_COLOR": "1"})
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if out.exists() and out.read_text().count("\n") >= 2:
            break
        time.sleep(0.05)
    alive = proc.poll() is None
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    log.close()
    assert alive, f"run ended before it could be killed: {(tmp_path / 'killed.log').read_text()[-500:]}"
    killed_at = out.read_text().count("\n")
    assert 2 <= killed_at < 6
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"resuming: {killed_at} of 6" in done.stdout
    ids = [t.problem.id for t in read_trajectories(out)]
    assert sorted(ids) == sorted(set(ids)) and len(ids) == 6
    summary = done.stdout
    assert "accuracy" in summary and "strong tokens" in summary


def _one_line_error(result, *needles: str) -> None:
    assert result.exit_code != 0
    errors = [ln for ln in result.output.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and result.output.rstrip().endswith(errors[0]), result.output
    for needle in needles:
        assert needle in errors[0], errors[0]


def test_unreachable_endpoint(tmp_path: Path) -> None:
    r = invoke(
        "run", "--problem", "1+1?", "--weak-url", "http://127.0.0.1:9/v1", "--weak-model", "m",
        "--strong-url", "http://127.0.0.1:9/v1", "--strong-model", "m", "--policy", "weak",
        "--set", "weak.max_retries=0",
    )  # fmt: skip
    _one_line_error(r, "cannot reach", "127.0.0.1:9")


def test_wrong_model_name(llama_server: LlamaServer) -> None:
    r = invoke(
        "run", "--problem", "1+1?", "--weak-url", llama_server.base_url, "--weak-model", "no-such-model",
        "--strong-url", llama_server.base_url, "--strong-model", "no-such-model", "--policy", "weak", *SHORT,
    )  # fmt: skip
    _one_line_error(r, "no-such-model", llama_server.model)


def test_bad_arguments_and_files(tmp_path: Path) -> None:
    _one_line_error(invoke("run", "--problem", "1+1?", "--policy", "thr", "--threshold", "1.5"), "threshold")
    _one_line_error(invoke("run", "--problem", "   ", "--policy", "weak"), "--problem is empty")
    _one_line_error(invoke("run", "--problem", "x", "--set", "engine.max_step=3"), "unknown config key", "max_steps")
    cfg = tmp_path / "c.yaml"
    cfg.write_text("wek: {model: x}\n")
    _one_line_error(invoke("run", "--problem", "x", "--config", str(cfg)), "unknown config key 'wek'")
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"question": "1+1?", "answer": "#### 2"}) + "\n{broken\n")
    _one_line_error(invoke("run", "--dataset", str(data), "--policy", "weak"), "d.jsonl:2")
    data.write_text(json.dumps({"question": "", "answer": "#### 2"}) + "\n")
    _one_line_error(invoke("run", "--dataset", str(data), "--policy", "weak"), "d.jsonl:1")
    _one_line_error(invoke("run", "--policy", "weak"), "--problem TEXT or --dataset FILE")


@contextlib.contextmanager
def serve_app(app) -> Iterator[str]:
    """Run an ASGI app with uvicorn on a free loopback port in a thread; yield its base URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join()


def broken_backend(delay_s: float = 0.0):
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse

    app = FastAPI()

    @app.get("/v1/models")
    def models() -> dict:
        return {"object": "list", "data": [{"id": "m", "object": "model"}]}

    @app.post("/v1/completions")
    async def completions() -> JSONResponse:
        await asyncio.sleep(delay_s)
        return JSONResponse({"error": {"message": "internal error"}}, status_code=500)

    return app


def test_server_answering_500_or_hanging() -> None:
    fast = [
        "--problem",
        "1+1?",
        "--policy",
        "weak",
        "--set",
        "weak.max_retries=1",
        "--set",
        "weak.options={backoff_s: 0}",
        "--set",
        "weak.chat_template=chatml",  # the stand-in serves no model with a template of its own
    ]
    with serve_app(broken_backend()) as url:
        args = ["--weak-url", f"{url}/v1", "--weak-model", "m", "--strong-url", f"{url}/v1", "--strong-model", "m"]
        _one_line_error(invoke("run", *fast, *args), "500")
    with serve_app(broken_backend(delay_s=5)) as url:
        args = ["--weak-url", f"{url}/v1", "--weak-model", "m", "--strong-url", f"{url}/v1", "--strong-model", "m"]
        _one_line_error(invoke("run", *fast, *args, "--set", "weak.timeout_s=0.3"), "0.3")


def test_scorer_returning_fewer_scores_than_steps(llama_server: LlamaServer) -> None:
    from trimroute.testing.pooling import pooling_app

    # a PRM server whose step tag differs from the client's: it finds no tags and returns no scores
    with serve_app(pooling_app("prm", "<wrong_tag>", 1)) as url:
        r = invoke(
            "run", "--problem", "1+1?", *endpoints(llama_server), "--policy", "thr:0.5",
            "--scorer", "qwen-prm", "--scorer-url", url, "--scorer-model", "prm", *SHORT,
        )  # fmt: skip
    _one_line_error(r, "0 step scores for 1 steps")
