"""Process reward models served by vLLM's pooling runner (``POST /pooling``, step pooling).

With step pooling, vLLM answers one row per step tag in the input::

    {"data": [{"index": 0, "object": "pooling", "data": [[p_neg, p_pos], ...]}],
     "usage": {"prompt_tokens": N, "total_tokens": N}}

Each row holds the class probabilities at one tag (softmax is the pooler's default activation; we also
send ``use_activation: true``). Rows that do not sum to 1 are taken as logits and softmaxed, so older
servers started with activation off still work. Subclasses say how the input is written and which
column is the positive class.

A history may outgrow the PRM's context (4096 generated tokens plus the prompt, against Qwen2.5-Math-PRM's
4096), so prompts are truncated on the left by default at the PRM's context, read once from the
``max_model_len`` vLLM reports in ``/v1/models``; a truncated prompt loses its first tags and the missing
leading steps score 1.0, as in the official code (DESIGN.md §4).

``base_url`` is the server root (``http://host:8002``); a trailing ``/v1`` is dropped, since vLLM
serves ``/pooling`` beside ``/v1``; ``base_urls`` lists replicas the same way. Options:
``truncate_prompt_tokens`` (``auto``: the server's ``max_model_len``, the default; a number of tokens; or
``false``: never truncate), ``backoff_s``, ``affinity`` (with several replicas: one problem's calls on one
replica, default true), plus the subclass's own.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import httpx

from trimroute.config import ScorerConfig
from trimroute.endpoint import Endpoint
from trimroute.errors import ConfigError, ScorerError
from trimroute.replicas import affinity_key
from trimroute.types import Problem, Scores, Step

__all__ = ["PoolingPRM", "positive_probability"]

COMMON_OPTIONS = ("truncate_prompt_tokens", "backoff_s", "affinity")
AUTO = "auto"


class PoolingPRM:
    """Scores every step with one ``/pooling`` request over the whole history."""

    name = "pooling-prm"
    positive_index = 1
    options: tuple[str, ...] = ()

    def __init__(self, config: ScorerConfig, *, transport: httpx.AsyncBaseTransport | None = None) -> None:
        valid = COMMON_OPTIONS + self.options
        unknown = sorted(set(config.options) - set(valid))
        if unknown:
            raise ConfigError(f"unknown option {unknown[0]!r} for a {self.name} scorer; valid: {', '.join(valid)}")
        if not config.model:
            raise ConfigError(f"model is required for a {self.name} scorer (the name vLLM serves it under)")
        roots = [url.rstrip("/").removesuffix("/v1") for url in config.urls]
        self.config = config
        self.truncate: int | str | None = _truncation(config.options.get("truncate_prompt_tokens", AUTO))
        self.endpoint = Endpoint.from_config(config, base_urls=roots, models_url="/v1/models", transport=transport)

    def input(self, problem: Problem, steps: Sequence[Step]) -> dict[str, Any]:
        """The part of the request that carries the text (``messages`` or ``input``)."""
        raise NotImplementedError

    def payload(self, problem: Problem, steps: Sequence[Step]) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.config.model, **self.input(problem, steps), "use_activation": True}
        if isinstance(self.truncate, int):
            body["truncate_prompt_tokens"] = self.truncate
        return body

    async def context(self) -> int | None:
        """The server's ``max_model_len`` for this model (None when it does not say)."""
        data = await self.endpoint.get("/v1/models")
        for entry in data.get("data") or ():
            if isinstance(entry, Mapping) and entry.get("id") == self.config.model:
                value = entry.get("max_model_len")
                return int(value) if isinstance(value, int) and value > 0 else None
        return None

    async def score(self, problem: Problem, steps: Sequence[Step]) -> Scores:
        if self.truncate == AUTO:
            self.truncate = await self.context()
        data = await self.endpoint.post("/pooling", self.payload(problem, steps), affinity=affinity_key(problem.text))
        rows = _rows(data, self.endpoint.url("/pooling"))
        if len(rows) > len(steps):
            raise ScorerError(
                f"{self.name} scorer got {len(rows)} step scores for {len(steps)} steps; is the server using "
                "step pooling with this model's step tag, and do steps contain the tag text?"
            )
        if len(rows) < len(steps) and self.truncate is None:
            raise ScorerError(
                f"{self.name} scorer got {len(rows)} step scores for {len(steps)} steps; check the server's step "
                "tag, or set options.truncate_prompt_tokens to the PRM's context if it cuts long prompts"
            )
        scores = [1.0] * (len(steps) - len(rows))  # leading steps cut off by left truncation
        scores += [positive_probability(row, self.positive_index) for row in rows]
        usage = data.get("usage") or {}
        return Scores(tuple(scores), prompt_tokens=int(usage.get("prompt_tokens", 0)), calls=1)

    async def aclose(self) -> None:
        await self.endpoint.aclose()


def _truncation(value: Any) -> int | str | None:
    if value == AUTO:
        return AUTO
    if value is False or value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    raise ConfigError(
        f"options.truncate_prompt_tokens must be 'auto', a positive number of tokens or false, got {value!r}"
    )


def positive_probability(row: Sequence[float], positive: int) -> float:
    """P(positive class) from a row of probabilities, or of logits (softmaxed)."""
    values = [float(v) for v in row]
    if all(0.0 <= v <= 1.0 for v in values) and abs(sum(values) - 1.0) < 1e-3:
        return values[positive]
    top = max(values)
    exps = [math.exp(v - top) for v in values]
    return exps[positive] / sum(exps)


def _rows(data: Mapping[str, Any], url: str) -> list[list[float]]:
    try:
        rows = data["data"][0]["data"]
        if rows and not isinstance(rows[0], list):
            rows = [rows]  # a single tag may come back unnested
        return [list(r) for r in rows]
    except (KeyError, IndexError, TypeError) as e:
        raise ScorerError(
            f"{url} answered without pooling data ({e!r}); is it vLLM started with --runner pooling?"
        ) from None
