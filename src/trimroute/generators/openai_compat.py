"""Generator over any OpenAI-compatible server: vLLM, SGLang, TGI, llama.cpp, Ollama, hosted APIs.

Two routes continue the assistant pre-fill (DESIGN.md §4):

- ``api="completions"`` (default): the model's chat template is rendered here and the text is POSTed to
  ``/completions``. Exact and best for prefix caching. ``chat_template: auto`` finds the model's own
  template on the first request (``generators/templates.py``: the model folder, GGUF file or local
  Hugging Face cache entry named by ``model``, else the server's ``/props`` or ``/tokenizer_info``).
- ``api="chat"``: ``/chat/completions`` with the pre-filled assistant message and
  ``continue_final_message: true, add_generation_prompt: false`` (vLLM, SGLang, TGI): the server renders.

Finish reasons: ``length`` -> LENGTH. ``stop`` -> STOP when the separator was hit, EOS when the model
ended. vLLM reports which in ``stop_reason`` (the matched string, or null / a token id for EOS) and
SGLang in ``matched_stop``; servers that report neither (llama-cpp-python) say ``stop`` for both, so
there a non-empty text counts as STOP and an empty one as EOS: a model that has ended answers the
next request with nothing, which then ends the solution one call later.

Options (``BackendConfig.options``): ``extra_body`` (mapping merged into every request),
``chat_template_kwargs`` (template variables on both routes, e.g. ``{enable_thinking: false}`` for Qwen3:
sent as ``chat_template_kwargs`` on the chat route, rendered locally on the completions route),
``template_vars`` (variables for a local Jinja chat template only, e.g. ``bos_token``), ``backoff_s``
(first retry delay), ``affinity`` (default true: with several ``base_urls``, every step of one problem goes
to the same replica while it is healthy, see ``trimroute.replicas``). ``top_k <= 0`` leaves top_k out
(hosted APIs reject it).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

from trimroute.config import BackendConfig
from trimroute.endpoint import Endpoint
from trimroute.errors import BackendError, ConfigError, RetryableBackendError
from trimroute.generators import templates
from trimroute.generators.templates import ChatTemplate
from trimroute.replicas import affinity_key
from trimroute.types import FinishReason, Generation, StepRequest

__all__ = ["OpenAIGenerator"]

OPTIONS = ("extra_body", "chat_template_kwargs", "template_vars", "backoff_s", "affinity")


class OpenAIGenerator:
    """Writes one step per call through an OpenAI-compatible HTTP API."""

    def __init__(self, config: BackendConfig, *, transport: httpx.AsyncBaseTransport | None = None) -> None:
        unknown = sorted(set(config.options) - set(OPTIONS))
        if unknown:
            raise ConfigError(f"unknown option {unknown[0]!r} for an openai backend; valid: {', '.join(OPTIONS)}")
        if not config.model:
            raise ConfigError("model is required for an openai backend (the name the server serves)")
        self.config = config
        self.model = config.model
        self.api = config.api
        self.extra_body: Mapping[str, Any] = dict(config.options.get("extra_body") or {})
        self.template_kwargs: Mapping[str, Any] = dict(config.options.get("chat_template_kwargs") or {})
        self._variables = {**(config.options.get("template_vars") or {}), **self.template_kwargs}
        self.template: ChatTemplate | None = None
        if config.chat_template != templates.AUTO:
            self.template = templates.load_template(config.chat_template, self._variables)
        self._template_lock = asyncio.Lock()
        self.endpoint = Endpoint.from_config(config, transport=transport)

    async def chat_template(self) -> ChatTemplate:
        """The template the completions route renders; ``auto`` is looked up once, on first use."""
        async with self._template_lock:
            if self.template is None:
                self.template = await self._find_template()
        return self.template

    async def _find_template(self) -> ChatTemplate:
        await self.endpoint.check_model()  # a wrong name is the error to report, not a missing template
        local = Path(self.model).expanduser()
        if local.is_dir() or (local.suffix == ".gguf" and local.is_file()):
            return templates.load_template(str(local), self._variables)
        found = templates.from_hf_cache(self.model, self._variables)
        root = self.endpoint.base_url.removesuffix("/v1")
        for path in ("/props", "/tokenizer_info"):  # llama.cpp server; vLLM --enable-tokenizer-info-endpoint
            if found is not None:
                break
            try:
                offered = await self.endpoint.get(path, root=True)
            except RetryableBackendError:
                raise  # the server is down, not lacking a template: say that
            except BackendError:
                continue
            found = templates.from_tokenizer_config(offered, self._variables, f"{root}{path}")
        if found is None:
            raise ConfigError(
                f"cannot find the chat template of model {self.model!r} (not a local model folder, not in the "
                f"Hugging Face cache, not offered by {root}); set chat_template to its tokenizer folder or Jinja "
                "file, use api: chat, or chat_template: chatml"
            )
        return found

    def payload(self, request: StepRequest, template: ChatTemplate | None = None) -> tuple[str, dict[str, Any]]:
        """The path and JSON body of the request for one step (``template``: the completions route's)."""
        body: dict[str, Any] = {
            "model": self.model,
            "max_tokens": request.max_tokens,
            "temperature": self.config.temperature,
            "top_p": self.config.top_p,
            "stop": list(request.stop),
        }
        if self.config.top_k > 0:
            body["top_k"] = self.config.top_k
        if request.seed is not None:
            body["seed"] = request.seed
        if self.api == "completions":
            path = "/completions"
            template = template or self.template
            if template is None:
                raise ConfigError("chat_template 'auto' is resolved on the first request: await chat_template()")
            body["prompt"] = template.render(request.messages)
            if request.logprobs:
                body["logprobs"] = 1
        else:
            path = "/chat/completions"
            body["messages"] = [{"role": m.role, "content": m.content} for m in request.messages]
            body["continue_final_message"] = True
            body["add_generation_prompt"] = False
            if self.template_kwargs:
                body["chat_template_kwargs"] = dict(self.template_kwargs)
            if request.logprobs:
                body["logprobs"] = True
        body.update(self.extra_body)
        return path, body

    async def generate_step(self, request: StepRequest) -> Generation:
        template = await self.chat_template() if self.api == "completions" else None
        path, body = self.payload(request, template)
        t0 = time.perf_counter()
        # the same for every step of one problem: the messages before the pre-fill (what the prefix cache holds)
        key = affinity_key(*(f"{m.role}:{m.content}" for m in request.messages[:-1]))
        data = await self.endpoint.post(path, body, affinity=key)
        latency = time.perf_counter() - t0
        return self.parse(data, request, latency)

    def parse(self, data: Mapping[str, Any], request: StepRequest, latency_s: float = 0.0) -> Generation:
        """A ``Generation`` from the server's JSON answer."""
        url = self.endpoint.url("/completions" if self.api == "completions" else "/chat/completions")
        try:
            choice = data["choices"][0]
            if self.api == "completions":
                text = choice["text"]
                lp = choice.get("logprobs") or {}
                logprobs = lp.get("token_logprobs")
            else:
                text = choice["message"]["content"] or ""
                lp = choice.get("logprobs") or {}
                logprobs = [t["logprob"] for t in lp.get("content") or []] if lp.get("content") else None
            usage = data["usage"]
            prompt_tokens, generated = int(usage["prompt_tokens"]), int(usage["completion_tokens"])
        except (KeyError, IndexError, TypeError, ValueError) as e:
            raise BackendError(
                f"{url} answered without the expected fields ({e!r}); is it OpenAI-compatible?"
            ) from None
        for stop in request.stop:  # some servers keep the stop string in the text
            if stop and text.endswith(stop):
                text = text[: -len(stop)]
                break
        return Generation(
            text=text,
            prompt_tokens=prompt_tokens,
            generated_tokens=generated,
            finish_reason=finish_reason(choice, text),
            token_logprobs=tuple(float(x) for x in logprobs if x is not None)
            if request.logprobs and logprobs
            else None,
            latency_s=latency_s,
        )

    async def aclose(self) -> None:
        await self.endpoint.aclose()


def finish_reason(choice: Mapping[str, Any], text: str) -> FinishReason:
    """Map an OpenAI-style choice onto ``FinishReason`` (see the module docstring for ``stop``)."""
    reason = choice.get("finish_reason")
    if reason == "length":
        return FinishReason.LENGTH
    for key in ("stop_reason", "matched_stop"):  # vLLM, SGLang
        if key in choice:
            return FinishReason.STOP if isinstance(choice[key], str) else FinishReason.EOS
    if reason in ("eos_token", "eos"):
        return FinishReason.EOS
    return FinishReason.STOP if text else FinishReason.EOS
