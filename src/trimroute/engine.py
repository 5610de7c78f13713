"""The one routing loop (DESIGN.md §3-4). Everything that routes steps calls ``Engine``.

For each problem: the weak model proposes a step from the shared prefix, the scorer scores the history,
the policy keeps the proposal or has the strong model write that one step from the same prefix, and the
weak model carries on. Problems run concurrently; each advances as soon as its own calls return.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import math
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace

from trimroute import prompts
from trimroute.errors import ConfigError
from trimroute.generators.base import Generator
from trimroute.policies.base import Policy
from trimroute.scorers.base import Scorer, check_scores
from trimroute.types import (
    ROLES,
    Action,
    FinishReason,
    Generation,
    Observation,
    Problem,
    Role,
    Step,
    StepRequest,
    StopReason,
    Trajectory,
    Usage,
)

StepCallback = Callable[[Problem, Step], None]


@dataclass(frozen=True)
class EngineConfig:
    """Rules of one routing run. Defaults follow the official setup (DESIGN.md §4)."""

    max_steps: int = 30
    max_step_tokens: int = 2048
    max_solution_tokens: int = 4096  # per-problem cap on the accepted solution's tokens
    budget: int | None = None  # hard cap on strong tokens per problem
    degenerate_retries: int = 1  # the official code retries a degenerate step once
    seed: int | None = 0  # None = unseeded sampling
    concurrency: int = 8  # problems in flight
    backend_concurrency: Mapping[str, int] = field(default_factory=lambda: {"weak": 8, "strong": 8, "scorer": 8})
    weak_logprobs: bool = False  # ask the weak model for token logprobs (confidence scorers use them)
    prompt: str = prompts.DEFAULT  # a name in prompts.FORMATS

    def __post_init__(self) -> None:
        for name in ("max_steps", "max_step_tokens", "max_solution_tokens", "concurrency"):
            if getattr(self, name) < 1:
                raise ConfigError(f"engine.{name} must be >= 1, got {getattr(self, name)}")
        if self.budget is not None and self.budget < 0:
            raise ConfigError(f"engine.budget must be >= 0 strong tokens, got {self.budget}")
        prompts.prompt_format(self.prompt)
        if self.degenerate_retries < 0:
            raise ConfigError("engine.degenerate_retries must be >= 0")
        unknown = set(self.backend_concurrency) - set(ROLES)
        if unknown or any(v < 1 for v in self.backend_concurrency.values()):
            raise ConfigError(
                f"engine.backend_concurrency takes weak/strong/scorer >= 1, got {dict(self.backend_concurrency)}"
            )


def call_seed(base: int | None, role: str, request: StepRequest) -> int | None:
    """Seed of one call: a function of the exact prompt (question and pre-fill), so identical prefixes
    sample identically (this is what lets sweep points share cached calls)."""
    if base is None:
        return None
    h = hashlib.blake2b(f"{base}\x00{role}".encode(), digest_size=4)
    for m in request.messages:
        h.update(f"\x00{m.role}\x00{m.content}".encode())
    return int.from_bytes(h.digest(), "little") & 0x7FFFFFFF


class Engine:
    """Runs problems through weak, strong, scorer and a policy.

    Args:
        weak, strong: generators of the two roles (may be the same object).
        scorer: step scorer; may be None when only score-free policies are used.
        config: the routing rules.
    """

    def __init__(
        self,
        weak: Generator,
        strong: Generator,
        scorer: Scorer | None = None,
        config: EngineConfig | None = None,
    ) -> None:
        self.weak = weak
        self.strong = strong
        self.scorer = scorer
        self.config = config or EngineConfig()
        self._limits: dict[str, asyncio.Semaphore] = {}

    def _limit(self, role: str) -> asyncio.Semaphore:
        if role not in self._limits:
            self._limits[role] = asyncio.Semaphore(self.config.backend_concurrency.get(role, 8))
        return self._limits[role]

    def with_config(self, config: EngineConfig) -> Engine:
        """The same backends under other rules (e.g. one server request's budget), sharing this engine's
        per-backend concurrency limits so all requests queue on the same bounds."""
        twin = Engine(self.weak, self.strong, self.scorer, config)
        twin._limits = self._limits
        return twin

    async def aclose(self) -> None:
        closers = {id(b): b for b in (self.weak, self.strong, self.scorer) if b is not None}
        for backend in closers.values():
            await backend.aclose()

    async def run(
        self,
        problems: Iterable[Problem],
        policy: Policy,
        on_step: StepCallback | None = None,
    ) -> AsyncIterator[Trajectory]:
        """Solve ``problems`` with at most ``config.concurrency`` in flight; yield each when it finishes."""
        queue: asyncio.Queue[Trajectory | BaseException] = asyncio.Queue()
        slots = asyncio.Semaphore(self.config.concurrency)

        async def one(problem: Problem) -> None:
            try:
                queue.put_nowait(await self.solve(problem, policy, on_step))
            except BaseException as e:  # handed to the consumer, which re-raises it
                queue.put_nowait(e)
            finally:
                slots.release()

        async def feed() -> int:
            n = 0
            for problem in problems:
                await slots.acquire()
                tasks.add(asyncio.create_task(one(problem)))
                n += 1
            return n

        tasks: set[asyncio.Task[None]] = set()
        feeder = asyncio.create_task(feed())
        done = 0
        try:
            while not (feeder.done() and done == feeder.result()):
                getter = asyncio.ensure_future(queue.get())
                await asyncio.wait({getter, feeder}, return_when=asyncio.FIRST_COMPLETED)
                if not getter.done():
                    getter.cancel()
                    continue
                item = getter.result()
                done += 1
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            feeder.cancel()
            for t in tasks:
                t.cancel()
            await asyncio.gather(feeder, *tasks, return_exceptions=True)

    async def solve(self, problem: Problem, policy: Policy, on_step: StepCallback | None = None) -> Trajectory:
        """Route one problem to the end of its solution (the rules of DESIGN.md §4)."""
        cfg = self.config
        t0 = time.perf_counter()
        steps: list[Step] = []
        discarded: list[Step] = []
        usage = Usage()
        stop: StopReason | None = None
        strong_only = policy.fixed_action is Action.REGENERATE
        use_scorer = policy.needs_scores and policy.fixed_action is None

        if use_scorer and self.scorer is None:
            raise ConfigError(f"policy {policy.name!r} needs a step scorer; configure one (--scorer)")

        def accept(step: Step) -> None:
            steps.append(step)
            if on_step is not None:
                on_step(problem, step)

        while stop is None:
            if len(steps) >= cfg.max_steps:
                stop = StopReason.MAX_STEPS
                break
            room = cfg.max_solution_tokens - sum(s.generated_tokens for s in steps)
            if room <= 0:
                stop = StopReason.TOKEN_CAP
                break
            max_tokens = min(cfg.max_step_tokens, room)
            budget_left = None if cfg.budget is None else cfg.budget - usage.strong.generated_tokens

            if strong_only and (budget_left is None or budget_left > 0):
                step, usage = await self._write("strong", problem, steps, max_tokens, budget_left, usage)
                if step is not None:
                    accept(replace(step, action=Action.REGENERATE))
                    stop = _end_of(step)
                    continue

            proposal, usage = await self._write("weak", problem, steps, max_tokens, None, usage)
            assert proposal is not None  # no budget applies to the weak model
            final = _end_of(proposal)
            action, score = Action.CONTINUE, None
            if policy.fixed_action is None:
                scores = (math.nan,) * (len(steps) + 1)
                if use_scorer:
                    assert self.scorer is not None
                    async with self._limit("scorer"):
                        result = await self.scorer.score(problem, [*steps, proposal])
                    check_scores(self.scorer.name, result, len(steps) + 1)
                    usage = usage.add(
                        "scorer",
                        calls=result.calls,
                        prompt_tokens=result.prompt_tokens,
                        generated_tokens=result.generated_tokens,
                    )
                    scores = tuple(result.values)
                    score = scores[-1]
                obs = Observation(
                    problem_id=problem.id,
                    scores=scores,
                    step_tokens=(*(s.generated_tokens for s in steps), proposal.generated_tokens),
                    actions=tuple(s.action or Action.CONTINUE for s in steps),
                    strong_tokens_spent=usage.strong.generated_tokens,
                    budget_left=budget_left,
                    is_final=final is not None,
                )
                if budget_left is None or budget_left > 0:
                    decision = policy.decide(obs)
                    # an RL environment's agent answers asynchronously (learn/env.py); policies are pure
                    action = await decision if inspect.isawaitable(decision) else decision

            if action is Action.REGENERATE:
                strong_step, usage = await self._write("strong", problem, steps, max_tokens, budget_left, usage)
                if strong_step is not None:
                    discarded.append(replace(proposal, score=score, action=Action.REGENERATE))
                    usage = usage.add("weak", discarded_tokens=proposal.generated_tokens)
                    accept(replace(strong_step, score=score, action=Action.REGENERATE))
                    # a regenerated final proposal ends the solution with the strong step
                    stop = final or _end_of(strong_step)
                    continue
            accept(replace(proposal, score=score, action=Action.CONTINUE))
            stop = final

        solution = prompts.SEPARATOR.join(s.text for s in steps)
        return Trajectory(
            problem=problem,
            steps=tuple(steps),
            discarded=tuple(discarded),
            stop_reason=stop,
            usage=usage,
            policy=policy.name,
            final_answer=prompts.extract_answer(solution),
            wall_time_s=time.perf_counter() - t0,
        )

    async def _write(
        self,
        role: Role,
        problem: Problem,
        steps: list[Step],
        max_tokens: int,
        budget_left: int | None,
        usage: Usage,
    ) -> tuple[Step | None, Usage]:
        """One step by ``role`` from the current prefix, continuing past degenerate output.

        For the strong model, ``budget_left`` is a hard cap: a step cut short by it is discarded
        (its tokens stay counted) and ``None`` is returned so the weak proposal stands.
        """
        generator = self.weak if role == "weak" else self.strong
        limit = max_tokens if budget_left is None else min(max_tokens, budget_left)
        history = [s.text for s in steps]
        text, calls, prompt_tokens, generated, latency = "", 0, 0, 0, 0.0
        logprobs: list[float] | None = [] if role == "weak" and self.config.weak_logprobs else None
        while True:
            request = prompts.step_request(
                problem,
                history + [text] if calls else history,
                max_tokens=limit - generated,
                seed=None,
                logprobs=logprobs is not None,
                prompt=prompts.prompt_format(self.config.prompt),
            )
            request = replace(request, seed=call_seed(self.config.seed, role, request))
            async with self._limit(role):
                gen: Generation = await generator.generate_step(request)
            text = text + prompts.SEPARATOR + gen.text if calls else gen.text
            calls += 1
            prompt_tokens += gen.prompt_tokens
            generated += gen.generated_tokens
            latency += gen.latency_s
            if logprobs is not None:
                logprobs.extend(gen.token_logprobs or ())
            retry = (
                gen.finish_reason is FinishReason.STOP
                and prompts.is_degenerate(text)
                and calls <= self.config.degenerate_retries
                and generated < limit
            )
            if not retry:
                break
        usage = usage.add(role, calls=calls, prompt_tokens=prompt_tokens, generated_tokens=generated)
        step = Step(
            text=text,
            role=role,
            generated_tokens=generated,
            prompt_tokens=prompt_tokens,
            finish_reason=gen.finish_reason,
            latency_s=latency,
            calls=calls,
            token_logprobs=tuple(logprobs) if logprobs is not None else None,
        )
        if (
            role == "strong"
            and budget_left is not None
            and gen.finish_reason is FinishReason.LENGTH
            and limit < max_tokens
        ):
            return None, usage.add("strong", discarded_tokens=generated)
        return step, usage


def _end_of(step: Step) -> StopReason | None:
    """Whether a step ends the solution, and why."""
    if prompts.is_final(step.text):
        return StopReason.ANSWER
    if step.finish_reason is FinishReason.EOS:
        return StopReason.EOS
    if step.finish_reason is FinishReason.LENGTH:
        return StopReason.LENGTH
    return None
