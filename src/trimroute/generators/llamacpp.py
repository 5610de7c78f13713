"""Generator running a GGUF model in-process with ``llama-cpp-python`` (extra ``[local]``), for CPUs.

One ``llama_cpp.Llama`` per generator; calls run in a worker thread, one at a time. The text is the
same as on the completions route (same chat template, tokenised like ``llama_cpp.server`` does), so a
model gives the same tokens in-process and behind the server.

KV cache: ``Llama`` keeps the tokens it evaluated last and re-evaluates only the part of a new prompt
after the longest common prefix. Step k+1 of a problem extends step k's prompt, so only the newly
accepted step is evaluated. Calls of different problems interleaved on one model evict each other's
prefix: give this backend a concurrency of 1 and few problems in flight for the best reuse.
``reused_tokens`` records the cached prefix length of the last call. A token evaluated alone gets
logits a few ulps off the batched ones, so the same seeded request can sample differently depending
on what is cached: runs are reproducible from a fresh model with the same order of calls.

Finish reasons are exact: when the separator is hit, ``llama-cpp-python`` stops before evaluating the
token that completed it; when the model emits its end-of-generation token, every generated token has
been evaluated. So ``n_tokens == prompt + generated`` means EOS and one fewer means STOP.

The chat template is the one the GGUF carries (``chat_template: auto``, from its
``tokenizer.chat_template`` metadata), or what ``chat_template`` names (``generators/templates.py``).

``model`` may be a catalog name (``trim models list``), resolved offline to its GGUF file; options:
``model_path`` (a GGUF file instead), ``n_ctx`` (4096), ``n_threads``, ``n_batch`` (512),
``logits_all`` (needed for token logprobs; slower), ``chat_template_kwargs`` (template variables, e.g.
``{enable_thinking: false}`` for Qwen3).
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

from trimroute.config import BackendConfig
from trimroute.errors import BackendError, ConfigError
from trimroute.generators import templates
from trimroute.types import FinishReason, Generation, StepRequest

__all__ = ["LlamaCppGenerator"]

OPTIONS = ("model_path", "n_ctx", "n_threads", "n_batch", "logits_all", "chat_template_kwargs")


class LlamaCppGenerator:
    """Writes one step per call with an in-process llama.cpp model."""

    def __init__(self, config: BackendConfig) -> None:
        opts = dict(config.options)
        unknown = sorted(set(opts) - set(OPTIONS))
        if unknown:
            raise ConfigError(f"unknown option {unknown[0]!r} for a llamacpp backend; valid: {', '.join(OPTIONS)}")
        path = opts.get("model_path")
        if not path and config.model:
            from trimroute.models import pull_model

            path = str(pull_model(config.model))  # a catalog name (or a .gguf path) in ``model``
        if not path or not Path(path).expanduser().is_file():
            raise ConfigError(
                f"options.model_path must name a GGUF file for a llamacpp backend (or give model a catalog name, "
                f"see trim models list); got model {config.model!r}, model_path {path!r}"
            )
        try:
            from llama_cpp import Llama
        except ImportError:
            raise ConfigError("the llamacpp backend needs llama-cpp-python: pip install 'trimroute[local]'") from None
        self.config = config
        self.model = config.model or Path(path).stem
        self.logits_all = bool(opts.get("logits_all", False))
        self.reused_tokens = 0
        self._lock = threading.Lock()
        try:
            self._llm = Llama(
                model_path=str(Path(path).expanduser()),
                n_ctx=int(opts.get("n_ctx", 4096)),
                n_threads=opts.get("n_threads"),
                n_batch=int(opts.get("n_batch", 512)),
                logits_all=self.logits_all,
                verbose=False,
            )
        except ValueError as e:
            raise ConfigError(f"llama.cpp cannot load {path!r}: {e}") from None
        variables = dict(opts.get("chat_template_kwargs") or {})
        if config.chat_template != templates.AUTO:
            self.template = templates.load_template(config.chat_template, variables)
        else:
            tokens = templates.gguf_special_tokens(self._llm)
            found = templates.from_gguf_metadata(self._llm.metadata, {**tokens, **variables}, Path(path).name)
            if found is None:
                raise ConfigError(
                    f"{path!r} carries no chat template ({templates.GGUF_KEY}); set chat_template to the model's "
                    "Jinja file or tokenizer folder, or chatml"
                )
            self.template = found

    async def generate_step(self, request: StepRequest) -> Generation:
        if request.logprobs and not self.logits_all:
            raise ConfigError("token logprobs from a llamacpp backend need options.logits_all: true")
        prompt = self.template.render(request.messages)
        return await asyncio.to_thread(self._generate, prompt, request)

    def _generate(self, prompt: str, request: StepRequest) -> Generation:
        llm = self._llm
        with self._lock:
            t0 = time.perf_counter()
            tokens = llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=True)
            if len(tokens) + request.max_tokens > llm.n_ctx():
                max_tokens = llm.n_ctx() - len(tokens)
                if max_tokens <= 0:
                    raise BackendError(
                        f"the prompt has {len(tokens)} tokens, more than the context of {llm.n_ctx()}; "
                        "raise options.n_ctx or lower engine.max_solution_tokens"
                    )
            else:
                max_tokens = request.max_tokens
            self.reused_tokens = _common_prefix(llm.input_ids.tolist(), tokens)
            out: Any = llm.create_completion(
                prompt=tokens,
                max_tokens=max_tokens,
                temperature=self.config.temperature,
                top_p=self.config.top_p,
                top_k=max(self.config.top_k, 0),
                seed=request.seed,
                stop=list(request.stop),
                logprobs=1 if request.logprobs else None,
            )
            choice, usage = out["choices"][0], out["usage"]
            generated = int(usage["completion_tokens"])
            if choice["finish_reason"] == "length":
                finish = FinishReason.LENGTH
            elif llm.n_tokens == len(tokens) + generated:
                finish = FinishReason.EOS  # see the module docstring
            else:
                finish = FinishReason.STOP
            logprobs = (choice.get("logprobs") or {}).get("token_logprobs") if request.logprobs else None
            return Generation(
                text=choice["text"],
                prompt_tokens=int(usage["prompt_tokens"]),
                generated_tokens=generated,
                finish_reason=finish,
                token_logprobs=tuple(float(x) for x in logprobs[:generated]) if logprobs is not None else None,
                latency_s=time.perf_counter() - t0,
            )

    async def aclose(self) -> None:
        with self._lock:
            self._llm.close()


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n
