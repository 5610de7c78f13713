"""The one routing loop (DESIGN.md §3-4). Everything that routes steps calls ``Engine``.

For each problem: the weak model proposes a step from the shared prefix, the scorer scores the history,
the policy keeps the proposal or has the strong model write that one step from the same prefix, and the
weak model carries on. Problems run concurrently; each advances as soon as its own calls return.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import inspect
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import TypeVar

from trimroute import prompts
from trimroute.config import EngineConfig
from trimroute.errors import ConfigError
from trimroute.generators.base import Generator
from trimroute.policies.base import Policy
from trimroute.scorers.base import Scorer, check_scores
from trimroute.types import (
    Action,
    FinishReason,
    Generation,
    Observation,
    Problem,
    Role,
    RoleUsage,
    Scores,
    Step,
    StepRequest,
    StopReason,
    Trajectory,
    Usage,
)

__all__ = ["Engine", "EngineConfig", "StepCallback", "call_seed"]

StepCallback = Callable[[Problem, Step], None]
T = TypeVar("T")


def call_seed(base: int | None, role: str, request: StepRequest) -> int | None:
    """Seed of one call: a function of the exact prompt (question and pre-fill), so identical prefixes
    sample identically (this is what lets sweep points share cached calls)."""
    if base is None:
        return None
    h = hashlib.blake2b(f"{base}\x00{role}".encode(), digest_size=4)
    for m in request.messages:
        h.update(f"\x00{m.role}\x00{m.content}".encode())
    return int.from_bytes(h.digest(), "little") & 0x7FFFFFFF


@dataclass(eq=False)
class _Shared:
    """What an engine shares with the twins it derives: the backends it closes and the per-backend limits."""

    backends: tuple[Generator | Scorer, ...]
    limits: dict[str, asyncio.Semaphore] = field(default_factory=dict)
    closed: bool = False


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
        unique = {id(b): b for b in (weak, strong, scorer) if b is not None}
        self._shared = _Shared(tuple(unique.values()))

    def _limit(self, role: str) -> asyncio.Semaphore:
        limits = self._shared.limits
        if role not in limits:
            limits[role] = asyncio.Semaphore(self.config.backend_concurrency.get(role, 8))
        return limits[role]

    def _twin(self, weak: Generator, strong: Generator, scorer: Scorer | None, config: EngineConfig) -> Engine:
        twin = Engine(weak, strong, scorer, config)
        twin._shared = self._shared
        return twin

    def with_config(self, config: EngineConfig) -> Engine:
        """The same backends under other rules (e.g. one server request's budget, one RL episode's seed),
        sharing this engine's per-backend concurrency limits so all callers queue on the same bounds."""
        return self._twin(self.weak, self.strong, self.scorer, config)

    def wrapped(
        self,
        generator: Callable[[Role, Generator], Generator],
        scorer: Callable[[Scorer], Scorer],
    ) -> Engine:
        """The same rules with each backend wrapped (the call cache, the server's per-role metrics).

        The twin shares this engine's limits and its backends: closing either closes the real backends
        once, so wrappers hold no resources of their own.
        """
        wrapped_scorer = scorer(self.scorer) if self.scorer is not None else None
        return self._twin(generator("weak", self.weak), generator("strong", self.strong), wrapped_scorer, self.config)

    async def aclose(self) -> None:
        if self._shared.closed:
            return
        self._shared.closed = True
        for backend in self._shared.backends:
            await backend.aclose()

    async def run(
        self,
        problems: Iterable[Problem],
        policy: Policy,
        on_step: StepCallback | None = None,
    ) -> AsyncIterator[Trajectory]:
        """Solve ``problems`` with at most ``config.concurrency`` in flight; yield each when it finishes."""
        check = getattr(policy, "check_scorer", None)  # e.g. a POMDP fitted for another scorer warns
        if check is not None and self.scorer is not None:
            check(self.scorer)
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
        """Route one problem to the end of its solution (the rules of DESIGN.md §4).

        With ``config.speculate``, the weak model's next step starts from the prefix that assumes *continue*
        while the newest proposal is being scored and decided on; a regeneration cancels it. Calls are
        seeded by their exact prompt, so the trajectory is the one the sequential loop would produce; a
        thrown-away speculative step is counted in ``usage.speculative``, never as the weak or strong
        model's tokens.
        """
        cfg = self.config
        t0 = time.perf_counter()
        steps: list[Step] = []
        discarded: list[Step] = []
        usage = Usage()
        stop: StopReason | None = None
        strong_only = policy.fixed_action is Action.REGENERATE
        use_scorer = policy.needs_scores and policy.fixed_action is None
        waits = {"weak": 0.0, "strong": 0.0, "scorer": 0.0}  # time the loop waited on each role
        first_step_s: float | None = None
        pending: asyncio.Task[tuple[Step | None, Usage]] | None = None  # the speculative next weak step
        shadows: list[asyncio.Task[RoleUsage]] = []  # shadow prefills of the strong model, in flight or done

        if use_scorer and self.scorer is None:
            raise ConfigError(f"policy {policy.name!r} needs a step scorer; configure one (--scorer)")

        def accept(step: Step) -> None:
            nonlocal first_step_s
            steps.append(step)
            if first_step_s is None:
                first_step_s = time.perf_counter() - t0
            if on_step is not None:
                on_step(problem, step)

        async def wait(role: str, work: Awaitable[T]) -> T:
            started = time.perf_counter()
            try:
                return await work
            finally:
                waits[role] += time.perf_counter() - started

        def shadow(history: list[Step]) -> None:
            """Warm the strong server for a regeneration of the step about to be written after ``history``."""
            spent = usage.strong.generated_tokens
            if cfg.shadow_prefill and policy.fixed_action is None and (cfg.budget is None or cfg.budget > spent):
                shadows.append(asyncio.create_task(self._prefill(problem, list(history))))  # a copy: steps grows

        def max_tokens_after(history: list[Step]) -> int | None:
            """The next step's token limit, or None when the solution must end before it."""
            room = cfg.max_solution_tokens - sum(s.generated_tokens for s in history)
            return None if len(history) >= cfg.max_steps or room <= 0 else min(cfg.max_step_tokens, room)

        try:
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
                    step, usage = await wait(
                        "strong", self._write("strong", problem, steps, max_tokens, budget_left, usage)
                    )
                    if step is not None:
                        accept(replace(step, action=Action.REGENERATE))
                        stop = _end_of(step)
                        continue

                if pending is not None:  # its shadow prefill started with it
                    proposal, spent = await wait("weak", pending)
                    pending, usage = None, usage + spent
                else:
                    shadow(steps)
                    proposal, usage = await wait("weak", self._write("weak", problem, steps, max_tokens, None, usage))
                assert proposal is not None  # no budget applies to the weak model
                final = _end_of(proposal)
                action, score = Action.CONTINUE, None
                if policy.fixed_action is None:
                    limit = max_tokens_after([*steps, proposal])
                    if cfg.speculate and use_scorer and final is None and limit is not None:
                        history = [*steps, proposal]
                        pending = asyncio.create_task(self._write("weak", problem, history, limit, None, Usage()))
                        shadow(history)
                    scores = (math.nan,) * (len(steps) + 1)
                    if use_scorer:
                        assert self.scorer is not None
                        result = await wait("scorer", self._score(problem, [*steps, proposal]))
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
                    if pending is not None and budget_left is None:  # the strong step will replace the proposal
                        usage, pending = usage + await _abandon(pending, "speculative", _weak_spent), None
                    strong_step, usage = await wait(
                        "strong", self._write("strong", problem, steps, max_tokens, budget_left, usage)
                    )
                    if strong_step is not None:
                        if pending is not None:  # it continued the proposal the strong step replaced
                            usage, pending = usage + await _abandon(pending, "speculative", _weak_spent), None
                        discarded.append(replace(proposal, score=score, action=Action.REGENERATE))
                        usage = usage.add("weak", discarded_tokens=proposal.generated_tokens)
                        accept(replace(strong_step, score=score, action=Action.REGENERATE))
                        # a regenerated final proposal ends the solution with the strong step
                        stop = final or _end_of(strong_step)
                        continue
                accept(replace(proposal, score=score, action=Action.CONTINUE))
                stop = final
        finally:
            if pending is not None:  # an error, a cancellation, or the solution ended before it was needed
                pending.cancel()
                with contextlib.suppress(BaseException):
                    await pending
            for task in shadows:  # only a cache warm-up: never waited for
                usage = usage + await _abandon(task, "prefill", lambda spent: spent)

        wall = time.perf_counter() - t0
        solution = prompts.SEPARATOR.join(s.text for s in steps)
        return Trajectory(
            problem=problem,
            steps=tuple(steps),
            discarded=tuple(discarded),
            stop_reason=stop,
            usage=usage,
            policy=policy.name,
            final_answer=prompts.extract_answer(solution),
            wall_time_s=wall,
            timing={
                "first_step_s": first_step_s if first_step_s is not None else wall,
                **{f"{role}_s": w for role, w in waits.items()},
                "engine_s": max(0.0, wall - sum(waits.values())),
            },
        )

    async def _score(self, problem: Problem, steps: list[Step]) -> Scores:
        assert self.scorer is not None
        async with self._limit("scorer"):
            result = await self.scorer.score(problem, steps)
        return check_scores(self.scorer.name, result, len(steps))

    async def _prefill(self, problem: Problem, steps: list[Step]) -> RoleUsage:
        """The strong model's prompt for rewriting the step after ``steps``, with one token to write: the
        same messages as the regeneration's request, so the server's prefix cache serves that request.
        Skipped (no usage) while every strong slot is taken."""
        request = prompts.step_request(
            problem, [s.text for s in steps], max_tokens=1, seed=None, prompt=prompts.prompt_format(self.config.prompt)
        )
        request = replace(request, seed=call_seed(self.config.seed, "strong", request))
        limit = self._limit("strong")
        if limit.locked():  # every strong slot is busy: a warm-up must never queue in front of real work
            return RoleUsage()
        async with limit:
            gen = await self.strong.generate_step(request)
        return RoleUsage(calls=1, prompt_tokens=gen.prompt_tokens, generated_tokens=gen.generated_tokens)

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


async def _abandon(task: asyncio.Task[T], bucket: str, spent: Callable[[T], RoleUsage]) -> Usage:
    """Cancel work started ahead of a decision that is no longer wanted (a speculative weak step, a shadow
    prefill); its usage, under ``bucket``.

    A finished task is counted in full (``spent`` of its result); one cancelled in flight counts as a call
    whose tokens are unknown (the server aborts it). Its errors are dropped: the sequential loop would never
    have made that call."""
    if not task.done():
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
        return Usage(**{bucket: RoleUsage(calls=1)})
    if task.cancelled() or task.exception() is not None:
        return Usage()
    return Usage(**{bucket: spent(task.result())})


def _weak_spent(written: tuple[Step | None, Usage]) -> RoleUsage:
    return written[1].weak


def _end_of(step: Step) -> StopReason | None:
    """Whether a step ends the solution, and why."""
    if prompts.is_final(step.text):
        return StopReason.ANSWER
    if step.finish_reason is FinishReason.EOS:
        return StopReason.EOS
    if step.finish_reason is FinishReason.LENGTH:
        return StopReason.LENGTH
    return None
