"""``trim serve --ray`` on a real local Ray cluster (a head and a worker node, ``ray_cluster``): the CLI
deploys two replicas in front of a simulated OpenAI server with 1 s latency; answers, streams and the
per-replica ``/metrics`` go through Ray Serve's proxy; a replica SIGKILLed under load loses no request
that had not started streaming."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import openai
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from trimroute.testing.llama_server import free_port
from trimroute.testing.openai_sim import ANSWER, SimulatedServer
from trimroute.testing.ray_cluster import LocalRayCluster

KEY = "test-key-ray"
# the worker process of each replica (app "trim", deployment "TrimReplica" in serve.ray_serve)
REPLICA_TITLE = "ray::ServeReplica:trim:TrimReplica"
QUESTION = "What is 6 times 7?"


@dataclass
class Served:
    url: str
    backend: SimulatedServer
    cluster: LocalRayCluster


@pytest.fixture(scope="module")
def served(ray_cluster: LocalRayCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("serve-ray")
    with SimulatedServer(1.0, tmp / "backend.log") as backend:
        model = {"kind": "openai", "base_url": backend.base_url, "model": "sim", "api_key_env": None,
                 "chat_template": "chatml"}  # fmt: skip
        config = {"policy": "weak", "weak": model, "strong": model, "serve": {"api_keys_env": "TRIM_TEST_KEYS"},
                  "engine": {"backend_concurrency": {"weak": 256, "strong": 256, "scorer": 256}}}  # fmt: skip
        path = tmp / "serve.yaml"
        path.write_text(yaml.safe_dump(config))
        port = free_port()
        cmd = [sys.executable, "-m", "trimroute", "serve", "--config", str(path), "--port", str(port),
               "--ray", ray_cluster.address, "--replicas", "2"]  # fmt: skip
        log = tmp / "serve.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT, env=ray_cluster.env | {"TRIM_TEST_KEYS": KEY}
            )
        try:
            deadline = time.monotonic() + 120
            while "TRIM on Ray Serve" not in log.read_text():
                assert proc.poll() is None, f"trim serve --ray exited:\n{log.read_text()}"
                assert time.monotonic() < deadline, f"trim serve --ray did not start:\n{log.read_text()}"
                time.sleep(0.5)
            yield Served(f"http://127.0.0.1:{port}", backend, ray_cluster)
        finally:
            proc.terminate()  # deletes the application, leaves the cluster to the next test
            proc.wait(timeout=60)


def metric(text: str, family: str) -> dict[str, float]:
    """The value of ``family`` (its first sample name: ``_total`` of a counter) summed by replica."""
    out: dict[str, float] = {}
    for f in text_string_to_metric_families(text):
        for s in f.samples if f.name == family else []:
            if s.name == f.samples[0].name:
                out[s.labels["replica"]] = out.get(s.labels["replica"], 0.0) + s.value
    return out


def test_answer_stream_and_metrics_of_every_replica(served: Served) -> None:
    with openai.OpenAI(base_url=f"{served.url}/v1", api_key=KEY, max_retries=0, timeout=60) as client:
        r = client.chat.completions.create(model="weak", messages=[{"role": "user", "content": QUESTION}])
        assert r.choices[0].message.content == ANSWER
        assert r.model_extra["trim"]["usage"]["weak"]["calls"] == 1  # type: ignore[index]
        chunks = list(
            client.chat.completions.create(
                model="weak", messages=[{"role": "user", "content": QUESTION}], stream=True,
                stream_options={"include_usage": True},
            )
        )  # fmt: skip
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == ANSWER
        assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 9
    assert httpx.post(f"{served.url}/v1/chat/completions", json={"model": "weak"}).status_code == 401
    text = httpx.get(f"{served.url}/metrics").text
    assert len(metric(text, "trim_requests_in_flight")) == 2  # one series per replica
    assert sum(metric(text, "trim_requests").values()) == 2  # wherever they ran


@dataclass
class Outcome:
    kind: str
    status: int
    text: str
    first_byte: float  # time.monotonic() when the first byte of the answer arrived


async def _load(url: str, n_plain: int, n_stream: int) -> list[Outcome]:
    """``n_plain`` non-streaming and ``n_stream`` streaming requests at once."""
    headers = {"Authorization": f"Bearer {KEY}"}
    body = {"model": "weak", "messages": [{"role": "user", "content": QUESTION}]}
    limits = httpx.Limits(max_connections=n_plain + n_stream)
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60, limits=limits) as client:

        async def request(stream: bool) -> Outcome:
            first, chunks = 0.0, []
            async with client.stream("POST", "/v1/chat/completions", json=body | {"stream": stream}) as r:
                async for chunk in r.aiter_bytes():
                    first = first or time.monotonic()
                    chunks.append(chunk)
            return Outcome("stream" if stream else "plain", r.status_code, b"".join(chunks).decode(), first)

        return await asyncio.gather(
            *(request(False) for _ in range(n_plain)), *(request(True) for _ in range(n_stream))
        )


def test_killing_a_replica_under_load_loses_no_request_that_had_not_started(served: Served) -> None:
    pids = served.cluster.processes(REPLICA_TITLE)
    assert len(pids) == 2, pids
    n_plain, n_stream = 48, 16
    before = served.backend.completions()
    killed_at = 0.0

    async def scenario() -> list[Outcome]:
        nonlocal killed_at
        load = asyncio.ensure_future(_load(served.url, n_plain, n_stream))
        # one replica dies once every request is in flight at a replica (its backend call made, its 1 s running)
        deadline = time.monotonic() + 30
        while served.backend.completions() - before < n_plain + n_stream and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        os.kill(pids[0], signal.SIGKILL)
        killed_at = time.monotonic()
        return await load

    results = asyncio.run(scenario())
    assert [(r.kind, r.status, r.text[:200]) for r in results if r.status != 200] == []
    cut = 0
    for r in results:
        if r.kind == "plain":
            assert json.loads(r.text)["choices"][0]["message"]["content"] == ANSWER
        elif r.first_byte > killed_at:  # not started when its replica died: answered in full
            assert r.text.endswith("data: [DONE]\n\n") and '"error"' not in r.text and "boxed{42}" in r.text
        else:  # started before: whole, or (if its replica was the dead one) ended by an error event
            cut += '"replica_died"' in r.text
    # the dead replica's requests were asked for again on the live one
    again = served.backend.completions() - before - (n_plain + n_stream)
    text = httpx.get(f"{served.url}/metrics").text
    ingress = {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples if "ingress" in s.name}
    print(f"replica killed with {n_plain + n_stream} requests in flight: 0 lost, {again} sent again; {ingress}")
    assert again > 0 and ingress["trim_ingress_retries_total"] >= again
    assert ingress["trim_ingress_streams_cut_total"] == cut
