"""Two real llama.cpp replicas per role: one is killed mid-run, no problem is lost and usage is a clean run's.

Every role (weak, strong, judge) lists both servers in ``base_urls``. Decoding is greedy, so a problem's
trajectory does not depend on which replica wrote each step. The killed run must finish every problem
with exactly the trajectories and usage totals of a clean run, and its usage must be what the servers
answered and the client used (a request cut off by the kill is not counted).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from trimroute import Engine, EngineConfig
from trimroute.config import BackendConfig, ScorerConfig
from trimroute.generators.openai_compat import OpenAIGenerator
from trimroute.policies import parse_policy
from trimroute.runner import route
from trimroute.scorers.judge import JudgeScorer
from trimroute.testing.latency import without_timings
from trimroute.testing.llama_server import LlamaServer, smollm2_path
from trimroute.types import Problem, RoleUsage, Trajectory

pytestmark = pytest.mark.slow

PROBLEMS = [
    Problem("a", "Tom has 3 apples and buys 4 more. How many apples does he have now?", "7"),
    Problem("b", "A box holds 6 eggs. How many eggs are in 5 boxes?", "30"),
    Problem("c", "A pen costs 2 dollars. How much do 9 pens cost?", "18"),
]
ENGINE = EngineConfig(max_steps=2, max_step_tokens=24, seed=0, concurrency=3, speculate=False)


@pytest.fixture(scope="module")
def second_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    """A second replica of the session's server (same model file, so the same served model id)."""
    server = LlamaServer(smollm2_path(), log_path=Path(tmp_path_factory.mktemp("replica")) / "server.log")
    server.start()
    yield server
    server.stop()


class Answers(httpx.AsyncBaseTransport):
    """Forwards to the real servers; keeps the usage of every answer received and counts requests that failed.
    ``kill`` (a server, after its n-th answer) kills that server mid-run, with requests queued on it."""

    def __init__(self, kill: tuple[LlamaServer, int] | None = None) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.usage: Counter[str] = Counter()
        self.by_port: Counter[int] = Counter()
        self.failed = 0
        self.kill = kill

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            response = await self.inner.handle_async_request(request)
            body = await response.aread()
        except httpx.TransportError:
            self.failed += 1
            raise
        if request.method == "POST":
            usage = json.loads(body)["usage"]
            self.usage.update({"calls": 1, "prompt_tokens": usage["prompt_tokens"]})
            self.usage.update({"generated_tokens": usage["completion_tokens"]})
            self.by_port[request.url.port or 0] += 1
            if self.kill is not None and self.by_port[self.kill[0].port] == self.kill[1]:
                self.kill[0].kill()
        return httpx.Response(response.status_code, headers=response.headers, content=body)

    async def aclose(self) -> None:
        await self.inner.aclose()


KEYS = ("calls", "prompt_tokens", "generated_tokens")


def totals(trajectories: list[Trajectory], role: str) -> dict[str, int]:
    usage = sum((getattr(t.usage, role) for t in trajectories), RoleUsage())
    return {k: getattr(usage, k) for k in KEYS}


async def run(urls: tuple[str, ...], model: str, transports: dict[str, Answers]) -> list[Trajectory]:
    def backend() -> BackendConfig:
        return BackendConfig(model=model, base_urls=urls, temperature=0.0, options={"backoff_s": 0.2})

    weak = OpenAIGenerator(backend(), transport=transports["weak"])
    strong = OpenAIGenerator(backend(), transport=transports["strong"])
    judge = ScorerConfig(kind="judge", model=model, base_urls=urls, options={"backoff_s": 0.2})
    engine = Engine(weak, strong, JudgeScorer(judge, transport=transports["scorer"]), ENGINE)
    try:
        return await route(engine, PROBLEMS, parse_policy("thr:0.5"), grade=None)
    finally:
        await engine.aclose()


async def test_a_replica_killed_mid_run_loses_no_problem_and_no_usage_is_counted_twice(
    llama_server: LlamaServer, second_server: LlamaServer
) -> None:
    urls = (llama_server.base_url, second_server.base_url)
    clean_answers = {role: Answers() for role in ("weak", "strong", "scorer")}
    clean = await run(urls, llama_server.model, clean_answers)
    assert set(clean_answers["weak"].by_port) == {llama_server.port, second_server.port}  # both replicas served

    # the weak role's transport kills the second server once it answered a weak step: the requests queued on it and
    # every later one of the problems it served must go to the first server
    killed_answers = {"weak": Answers(kill=(second_server, 1)), "strong": Answers(), "scorer": Answers()}
    killed = await run(urls, llama_server.model, killed_answers)
    assert not second_server.running and sum(a.failed for a in killed_answers.values()) > 0

    assert [t.problem.id for t in killed] == [p.id for p in PROBLEMS]  # 0 lost problems
    assert [without_timings(t) for t in killed] == [without_timings(t) for t in clean]
    for role in ("weak", "strong", "scorer"):
        assert totals(killed, role) == totals(clean, role)
        answered = killed_answers[role].usage
        assert totals(killed, role) == {k: answered[k] for k in KEYS}  # the answers used, each once
    assert totals(clean, "strong")["calls"] > 0  # every role had calls to hand over
    summary = {role: totals(killed, role) for role in ("weak", "strong", "scorer")}
    print(f"lost problems: 0 of {len(PROBLEMS)}; usage = clean run's: {summary}; HTTP exchanges cut off or refused:",
          {role: a.failed for role, a in killed_answers.items()})  # fmt: skip
