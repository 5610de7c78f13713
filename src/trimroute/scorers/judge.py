"""LLM-as-judge step scorer over any OpenAI-compatible endpoint that returns top logprobs.

For step i the judge sees the question, the steps before it and step i, and is asked whether step i
is correct; the score is P(yes) / (P(yes) + P(no)) over the first answer token's top logprobs (every
spelling of yes/no, case and spaces ignored). If neither appears among them the judge has no opinion
and the score is 0.5.

The score of step i depends only on the question and steps 1..i, so it is cached by a hash of exactly
that: re-scoring the whole history (DESIGN.md §4) costs one call for the newest step, plus one for a
step the strong model rewrote. ``Scores`` counts only the calls made and their tokens.

Options: ``api`` (``completions``: template rendered here like the generator's route, default;
``chat``), ``chat_template`` (``chatml`` or a Jinja file), ``top_logprobs`` (20), ``backoff_s``,
``affinity`` (with several ``base_urls``: one problem's calls on one replica, default true), ``cache_size``
(100000 step scores).
"""

from __future__ import annotations

import asyncio
import hashlib
import math
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

import httpx

from trimroute.config import ScorerConfig
from trimroute.endpoint import Endpoint
from trimroute.errors import ConfigError, ScorerError
from trimroute.generators.templates import load_template
from trimroute.replicas import affinity_key
from trimroute.types import Message, Problem, Scores, Step

__all__ = ["JudgeScorer", "judge_messages", "yes_probability"]

OPTIONS = ("api", "chat_template", "top_logprobs", "backoff_s", "affinity", "cache_size")

QUESTION = "Is the newest step correct? Answer Yes or No."


def judge_messages(problem: Problem, steps: Sequence[Step]) -> tuple[Message, ...]:
    """Ask whether the last of ``steps`` is correct, given the question and the steps before it."""
    earlier = "\n\n".join(s.text for s in steps[:-1]) or "(none)"
    return (
        Message(
            "user",
            f"Problem:\n{problem.text}\n\nEarlier steps:\n{earlier}\n\nNewest step:\n{steps[-1].text}\n\n{QUESTION}",
        ),
        Message("assistant", ""),
    )


def yes_probability(top: Mapping[str, float]) -> float:
    """P(yes) / (P(yes) + P(no)) from a token -> logprob map; 0.5 when neither is there."""
    yes = sum(math.exp(lp) for tok, lp in top.items() if tok.strip().lower() == "yes")
    no = sum(math.exp(lp) for tok, lp in top.items() if tok.strip().lower() == "no")
    return yes / (yes + no) if yes + no > 0 else 0.5


class JudgeScorer:
    """Scores each step by asking an LLM whether it is correct (one cached call per new step)."""

    name = "judge"

    def __init__(self, config: ScorerConfig, *, transport: httpx.AsyncBaseTransport | None = None) -> None:
        opts = dict(config.options)
        unknown = sorted(set(opts) - set(OPTIONS))
        if unknown:
            raise ConfigError(f"unknown option {unknown[0]!r} for a judge scorer; valid: {', '.join(OPTIONS)}")
        if not config.model:
            raise ConfigError("model is required for a judge scorer (the name the server serves)")
        self.api = opts.get("api", "completions")
        if self.api not in ("completions", "chat"):
            raise ConfigError(f"judge option api must be 'completions' or 'chat', got {self.api!r}")
        self.top_logprobs = int(opts.get("top_logprobs", 20))
        self.cache_size = int(opts.get("cache_size", 100_000))
        self.template = load_template(str(opts.get("chat_template", "chatml")))
        self.model = config.model
        self._cache: OrderedDict[str, float] = OrderedDict()
        self.endpoint = Endpoint.from_config(config, transport=transport)

    def payload(self, problem: Problem, steps: Sequence[Step]) -> tuple[str, dict[str, Any]]:
        messages = judge_messages(problem, steps)
        body: dict[str, Any] = {"model": self.model, "max_tokens": 1, "temperature": 0.0}
        if self.api == "completions":
            body |= {"prompt": self.template.render(messages), "logprobs": self.top_logprobs}
            return "/completions", body
        body |= {
            "messages": [{"role": m.role, "content": m.content} for m in messages[:-1]],
            "logprobs": True,
            "top_logprobs": self.top_logprobs,
        }
        return "/chat/completions", body

    async def score(self, problem: Problem, steps: Sequence[Step]) -> Scores:
        keys = _prefix_keys(problem, steps)
        values: list[float | None] = [self._cache.get(k) for k in keys]
        missing = [i for i, v in enumerate(values) if v is None]
        answers = await asyncio.gather(*(self._judge(problem, steps[: i + 1]) for i in missing))
        prompt_tokens = generated = 0
        for i, (score, p_tokens, g_tokens) in zip(missing, answers, strict=True):
            values[i] = score
            self._remember(keys[i], score)
            prompt_tokens += p_tokens
            generated += g_tokens
        return Scores(
            tuple(v for v in values if v is not None),
            prompt_tokens=prompt_tokens,
            generated_tokens=generated,
            calls=len(missing),
        )

    async def _judge(self, problem: Problem, steps: Sequence[Step]) -> tuple[float, int, int]:
        path, body = self.payload(problem, steps)
        data = await self.endpoint.post(path, body, affinity=affinity_key(problem.text))
        try:
            choice = data["choices"][0]
            if self.api == "completions":
                top = choice["logprobs"]["top_logprobs"][0]
            else:
                top = {t["token"]: t["logprob"] for t in choice["logprobs"]["content"][0]["top_logprobs"]}
            usage = data.get("usage") or {}
            return yes_probability(top), int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0))
        except (KeyError, IndexError, TypeError) as e:
            raise ScorerError(
                f"judge {self.endpoint.url(path)} answered without top logprobs ({e!r}); "
                "the judge needs a server that returns them"
            ) from None

    def _remember(self, key: str, score: float) -> None:
        self._cache[key] = score
        self._cache.move_to_end(key)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)

    async def aclose(self) -> None:
        await self.endpoint.aclose()


def _prefix_keys(problem: Problem, steps: Sequence[Step]) -> list[str]:
    """One key per step: a hash of the question and the steps up to and including it."""
    h = hashlib.sha256(problem.text.encode())
    keys = []
    for s in steps:
        h.update(b"\x00" + s.text.encode())
        keys.append(h.copy().hexdigest())
    return keys
