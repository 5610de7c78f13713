"""An in-process stand-in for a vLLM pooling server serving a step-level PRM (no PRM weights here).

``pooling_app`` speaks vLLM's wire format: ``GET /v1/models`` and ``POST /pooling`` with ``messages``
or ``input``, answering one ``[p0, p1]`` row per step tag, with ``usage``. Prompt "tokens" are
whitespace-separated words, so ``truncate_prompt_tokens`` drops the tags in the cut-off left part like
the real server does. Serve it with ``httpx.ASGITransport(app=pooling_app(...))``; requires FastAPI.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

__all__ = ["pooling_app"]


def pooling_app(
    model: str,
    tag: str,
    positive_index: int,
    score_fn: Callable[[str], float] = lambda step: 0.1 if "wrong" in step else 0.9,
    logits: bool = False,
    requests: list[dict[str, Any]] | None = None,
    max_model_len: int | None = None,
) -> Any:
    """A FastAPI app scoring each tagged step with ``score_fn(step_text)``.

    ``logits=True`` answers raw log-probabilities instead of probabilities (activation off).
    Every request body is appended to ``requests`` when given. ``max_model_len`` is reported in
    ``/v1/models`` and longer prompts are rejected with vLLM's 400, as vLLM does.
    """
    from fastapi import FastAPI, HTTPException

    app = FastAPI()

    @app.get("/v1/models")
    def models() -> dict[str, Any]:
        card: dict[str, Any] = {"id": model, "object": "model"}
        if max_model_len is not None:
            card["max_model_len"] = max_model_len
        return {"object": "list", "data": [card]}

    @app.post("/pooling")
    def pooling(body: dict[str, Any]) -> dict[str, Any]:
        if requests is not None:
            requests.append(body)
        if body.get("model") != model:
            raise HTTPException(404, f"The model `{body.get('model')}` does not exist.")
        if "messages" in body:
            text = "\n".join(m["content"] for m in body["messages"])
        elif "input" in body:
            text = body["input"]
        else:
            raise HTTPException(400, "either messages or input is required")
        words = text.split(" ")
        cut = body.get("truncate_prompt_tokens")
        kept = " ".join(words[len(words) - cut :]) if cut and cut < len(words) else text
        if max_model_len is not None and len(kept.split(" ")) > max_model_len:
            raise HTTPException(400, f"This model's maximum context length is {max_model_len} tokens.")
        pieces = kept.split(tag)[:-1]
        rows = []
        for piece in pieces:
            step = piece.rsplit("\n", 1)[-1]
            p = score_fn(step)
            row = [0.0, 0.0]
            row[positive_index], row[1 - positive_index] = p, 1.0 - p
            rows.append([math.log(max(v, 1e-12)) for v in row] if logits else row)
        n = len(kept.split(" "))
        return {
            "id": "pool-1",
            "object": "list",
            "model": model,
            "data": [{"index": 0, "object": "pooling", "data": rows}],
            "usage": {"prompt_tokens": n, "total_tokens": n},
        }

    return app
