"""The SQLite call cache: hits, in-flight coalescing, persistence across processes, unchanged cost accounting."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from trimroute import Engine, EngineConfig, Problem, parse_policy
from trimroute.generators.cache import CachedGenerator
from trimroute.runner import cached_engine
from trimroute.scorers.cache import CachedScorer
from trimroute.store import CallStore
from trimroute.testing import ScriptedGenerator, ScriptedScorer
from trimroute.types import FinishReason, Generation, Message, Step, StepRequest

P = Problem("p1", "What is 1 + 1?", "2")


def request(prefill: str = "Solution:\n\n", seed: int | None = 7, max_tokens: int = 64) -> StepRequest:
    return StepRequest((Message("user", "q"), Message("assistant", prefill)), max_tokens=max_tokens, seed=seed)


class GatedGenerator:
    """A generator that holds every call until ``gate`` opens (to keep identical calls in flight together)."""

    def __init__(self) -> None:
        self.model = "gated"
        self.gate = asyncio.Event()
        self.calls = 0

    async def generate_step(self, request: StepRequest) -> Generation:
        self.calls += 1
        await self.gate.wait()
        return Generation("step", prompt_tokens=5, generated_tokens=1, finish_reason=FinishReason.STOP, latency_s=0.5)

    async def aclose(self) -> None:
        return None


@pytest.fixture
def store(tmp_path: Path):
    s = CallStore(tmp_path / "cache.sqlite")
    yield s
    s.close()


async def test_repeat_is_a_hit_and_returns_the_same_generation(store: CallStore) -> None:
    inner = ScriptedGenerator("m", ["two words"])
    gen = CachedGenerator(inner, store, "weak")
    first = await gen.generate_step(request())
    second = await gen.generate_step(request())
    assert first == second and len(inner.requests) == 1
    assert store.stats["weak"].to_dict() == {"requests": 2, "hits": 1, "coalesced": 0, "misses": 1}


@pytest.mark.parametrize(
    "other",
    [
        request(prefill="Solution:\n\nx\n\n"),
        request(seed=8),
        request(max_tokens=65),
        StepRequest(request().messages, max_tokens=64, seed=7, stop=("\n",)),
        StepRequest(request().messages, max_tokens=64, seed=7, logprobs=True),
    ],
)
async def test_any_difference_in_the_request_is_a_miss(store: CallStore, other: StepRequest) -> None:
    inner = ScriptedGenerator("m", ["a"])
    gen = CachedGenerator(inner, store, "weak")
    await gen.generate_step(request())
    await gen.generate_step(other)
    assert len(inner.requests) == 2 and store.stats["weak"].misses == 2


async def test_model_and_sampling_params_are_part_of_the_key(store: CallStore) -> None:
    a = CachedGenerator(ScriptedGenerator("m", ["a"]), store, "weak", {"temperature": 0.7})
    b = CachedGenerator(ScriptedGenerator("m", ["b"]), store, "weak", {"temperature": 0.0})
    c = CachedGenerator(ScriptedGenerator("other", ["c"]), store, "weak", {"temperature": 0.7})
    texts = [(await g.generate_step(request())).text for g in (a, b, c)]
    assert texts == ["a", "b", "c"]


async def test_unseeded_requests_are_never_cached(store: CallStore) -> None:
    inner = ScriptedGenerator("m", ["a"])
    gen = CachedGenerator(inner, store, "weak")
    for _ in range(2):
        await gen.generate_step(request(seed=None))
    assert len(inner.requests) == 2 and len(store) == 0


async def test_identical_requests_in_flight_make_one_call(store: CallStore) -> None:
    inner = GatedGenerator()
    gen = CachedGenerator(inner, store, "strong")
    tasks = [asyncio.create_task(gen.generate_step(request())) for _ in range(5)]
    await asyncio.sleep(0.05)
    inner.gate.set()
    results = await asyncio.gather(*tasks)
    assert inner.calls == 1 and len(set(results)) == 1
    assert store.stats["strong"].to_dict() == {"requests": 5, "hits": 4, "coalesced": 4, "misses": 1}


async def test_waiters_make_the_call_when_its_owner_is_cancelled(store: CallStore) -> None:
    inner = GatedGenerator()
    gen = CachedGenerator(inner, store, "weak")
    owner = asyncio.create_task(gen.generate_step(request()))
    await asyncio.sleep(0.01)
    waiter = asyncio.create_task(gen.generate_step(request()))
    await asyncio.sleep(0.01)
    owner.cancel()
    await asyncio.sleep(0.01)
    inner.gate.set()
    assert (await waiter).text == "step"
    assert inner.calls == 2 and store.stats["weak"].misses == 1


async def test_a_failed_call_is_not_stored(store: CallStore) -> None:
    class Failing:
        model = "m"

        async def generate_step(self, request: StepRequest) -> Generation:
            raise RuntimeError("server down")

        async def aclose(self) -> None:
            return None

    with pytest.raises(RuntimeError, match="server down"):
        await CachedGenerator(Failing(), store, "weak").generate_step(request())
    assert len(store) == 0


async def test_entries_persist_across_processes(tmp_path: Path) -> None:
    path = tmp_path / "shared.sqlite"
    writer = textwrap.dedent(
        f"""
        import asyncio
        from trimroute.generators.cache import CachedGenerator
        from trimroute.store import CallStore
        from trimroute.testing import ScriptedGenerator
        from trimroute.types import Message, StepRequest

        async def main():
            store = CallStore({str(path)!r})
            req = StepRequest((Message("user", "q"), Message("assistant", "Solution:\\n\\n")), max_tokens=64, seed=7)
            await CachedGenerator(ScriptedGenerator("m", ["from the other process"]), store, "weak").generate_step(req)
            store.close()

        asyncio.run(main())
        """
    )
    subprocess.run([sys.executable, "-c", writer], check=True)
    store = CallStore(path)
    inner = ScriptedGenerator("m", ["never called"])
    gen = await CachedGenerator(inner, store, "weak").generate_step(request())
    store.close()
    assert gen.text == "from the other process" and inner.requests == []


async def test_scorer_cache_keys_on_problem_and_every_step(store: CallStore) -> None:
    inner = ScriptedScorer()
    scorer = CachedScorer(inner, store)
    steps = [Step("a = 1", "weak", 3), Step("wrong", "weak", 1)]
    first = await scorer.score(P, steps)
    assert await scorer.score(P, steps) == first and inner.calls == 1
    await scorer.score(P, [steps[0], Step("wrong", "strong", 1)])
    await scorer.score(Problem("p2", "another", "3"), steps)
    assert inner.calls == 3 and store.stats["scorer"].hits == 1


async def test_a_cached_sweep_counts_every_token_like_an_uncached_one(store: CallStore) -> None:
    """Cost accounting must not change with the cache: hits still count their tokens in the trajectory."""

    def build() -> Engine:
        weak = ScriptedGenerator("weak", ["a = 1", "wrong b = 3", "c = 2", "so \\boxed{2}"])
        strong = ScriptedGenerator("strong", ["x", "b = 1", "y", "z"])
        return Engine(weak, strong, ScriptedScorer(), EngineConfig(seed=0))

    plain = [await build().solve(P, parse_policy(spec)) for spec in ("thr:0.5", "thr:0.6")]
    engine = cached_engine(build(), store)
    cached = [await engine.solve(P, parse_policy(spec)) for spec in ("thr:0.5", "thr:0.6")]
    for a, b in zip(plain, cached, strict=True):
        assert (a.steps, a.discarded, a.usage) == (b.steps, b.discarded, b.usage)
    assert cached[1].usage.weak.calls == 4 and cached[1].usage.scorer.calls == 4
    # the second point repeats the first call for call: all hits
    assert store.stats["weak"].misses == 4 and store.stats["weak"].hits == 4
    assert store.stats["scorer"].misses == 4 and store.stats["scorer"].hits == 4
    assert store.stats["strong"].misses == 1 and store.stats["strong"].hits == 1


async def test_cached_engine_closes_a_shared_backend_once(store: CallStore) -> None:
    closes = []

    class Closing(ScriptedGenerator):
        async def aclose(self) -> None:
            closes.append(self.model)

    shared = Closing("both", ["a"])
    await cached_engine(Engine(shared, shared), store).aclose()
    assert closes == ["both"]
