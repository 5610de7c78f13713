"""Strong-model likelihood of the weak steps: a PRM-free step scorer that costs one prefill, not a generation.

The strong model reads the solution so far (the same chat the generators continue, DESIGN.md §4) and
each step's mean and minimum token log-probability under it are the features; the score is
``exp(mean)`` (or ``exp(min)``). A step the strong model finds implausible is the kind TRIM should
regenerate (TRIM §3). The model runs in-process with llama.cpp; the KV cache is kept between calls, so
scoring a history that grew by one step evaluates only the new tokens, and only the positions that
predict a step token produce logits (a Qwen vocabulary row is 600 KB).
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from trimroute import prompts
from trimroute.errors import ConfigError, ScorerError
from trimroute.scorers.confidence import check_statistic, logprob_stats
from trimroute.scorers.features import Features
from trimroute.types import Problem, Scores, Step

if TYPE_CHECKING:
    from trimroute.config import ScorerConfig

__all__ = ["LikelihoodScorer", "TokenLogprobs", "likelihood_scorer"]

DEFAULT_MODEL = "qwen2.5-coder-1.5b-instruct"
# a step's hidden-state feature from its tokens' states (a step always has a token of its own)
HIDDEN = {"mean": lambda s: tuple(s.mean(0).tolist()), "last": lambda s: tuple(s[-1].tolist())}


class TokenLogprobs:
    """Teacher-forced token log-probabilities of text spans under a GGUF model (llama.cpp, prefill only).

    With ``hidden``, the same prefill also keeps the final-layer hidden state of every scored token
    (llama.cpp's unpooled embeddings; llama.cpp then outputs every row, ~15 % more work on a 1.5B model).
    Not thread-safe by itself: one llama.cpp context holds one KV cache; ``LikelihoodScorer`` serialises.
    """

    def __init__(
        self, model_path: str | Path, *, n_ctx: int = 4096, n_threads: int | None = None, hidden: bool = False
    ) -> None:
        try:
            import llama_cpp
        except ImportError:
            raise ConfigError("the likelihood scorer needs llama.cpp: pip install 'trimroute[local]'") from None
        # unpooled embeddings are the last layer's per-token states; the logits still come with them
        pooling = llama_cpp.LLAMA_POOLING_TYPE_NONE if hidden else llama_cpp.LLAMA_POOLING_TYPE_UNSPECIFIED
        self.llm = llama_cpp.Llama(
            model_path=str(model_path), n_ctx=n_ctx, n_threads=n_threads, logits_all=False, verbose=False,
            embedding=hidden, pooling_type=pooling,
        )  # fmt: skip
        self.n_ctx, self.hidden = n_ctx, hidden
        self.evaluated_tokens = 0  # prefill work actually done (the KV cache saves the rest)
        self.states: dict[int, np.ndarray] = {}  # with ``hidden``: position -> hidden state, of the last call
        self._embeddings_ith = llama_cpp.llama_get_embeddings_ith

    def close(self) -> None:
        self.llm.close()

    def _tokens_with_offsets(self, text: str) -> tuple[list[int], list[int]]:
        """Tokens of ``text`` and the byte offset where each starts."""
        tokens = self.llm.tokenize(text.encode(), add_bos=True, special=True)
        added = len(tokens) - len(self.llm.tokenize(text.encode(), add_bos=False, special=True))  # a BOS, if any
        offsets, at = [0] * added, 0
        for tok in tokens[added:]:
            offsets.append(at)
            at += len(self.llm.detokenize([tok], special=True))
        if at != len(text.encode()):
            raise ScorerError("llama.cpp tokens do not detokenize back to the scored text; use another model")
        return tokens, offsets

    def span_logprobs(self, text: str, spans: Sequence[tuple[int, int]]) -> tuple[list[list[float]], int]:
        """Log-probabilities of the tokens starting inside each character span, and the prompt's token count."""
        logprobs, _, n_tokens = self.span_states(text, spans)
        return logprobs, n_tokens

    def span_states(
        self, text: str, spans: Sequence[tuple[int, int]]
    ) -> tuple[list[list[float]], list[np.ndarray], int]:
        """``span_logprobs`` plus, with ``hidden``, each span's hidden states (its tokens × n_embd)."""
        tokens, offsets = self._tokens_with_offsets(text)
        if len(tokens) > self.n_ctx:
            raise ScorerError(f"likelihood scorer: {len(tokens)} tokens exceed its n_ctx of {self.n_ctx}; raise n_ctx")
        byte_spans = [(len(text[:s].encode()), len(text[:e].encode())) for s, e in spans]
        owners = [[j for j in range(1, len(tokens)) if s <= offsets[j] < e] for s, e in byte_spans]
        wanted = sorted({j for js in owners for j in js})
        values = self._predict(tokens, wanted) if wanted else {}
        empty = np.zeros((0, self.llm.n_embd()))
        states = [np.asarray([self.states[j] for j in js]) if self.hidden and js else empty for js in owners]
        return [[values[j] for j in js] for js in owners], states, len(tokens)

    def _predict(self, tokens: list[int], wanted: list[int]) -> dict[int, float]:
        """log p(tokens[j] | tokens[:j]) for each j in ``wanted``, evaluating only past the reusable cache."""
        llm = self.llm
        cached = llm.input_ids[: llm.n_tokens]
        common = 0
        for a, b in zip(cached, tokens, strict=False):
            if a != b:
                break
            common += 1
        n_past = min(common, wanted[0] - 1)  # logits are only kept for the batch being decoded
        # llama.cpp internals: the high-level API offers all-or-last logits; we want a chosen few rows
        ctx, batch = llm._ctx, llm._batch
        ctx.kv_cache_seq_rm(-1, n_past, -1)
        need, at = {j - 1 for j in wanted}, set(wanted)
        out: dict[int, float] = {}
        self.states = {}
        for start in range(n_past, len(tokens), llm.n_batch):
            chunk = tokens[start : start + llm.n_batch]
            batch.set_batch(batch=chunk, n_past=start, logits_all=False)
            flagged = [i for i in range(len(chunk)) if start + i in need]
            for i in range(len(chunk)):
                batch.batch.logits[i] = (start + i) in need
            if not flagged:
                batch.batch.logits[len(chunk) - 1] = True  # llama.cpp wants at least one output row
            ctx.decode(batch)
            for i in flagged:
                row = np.ctypeslib.as_array(ctx.get_logits_ith(i), shape=(llm.n_vocab(),))
                peak = float(row.max())
                log_z = peak + math.log(float(np.exp(row - peak).sum()))
                out[start + i + 1] = float(row[tokens[start + i + 1]]) - log_z
            if self.hidden:  # the state after reading token j (its logit row, j - 1, may be in the last chunk)
                self.states.update({start + i: self._state(i) for i in range(len(chunk)) if start + i in at})
            llm.input_ids[start : start + len(chunk)] = chunk
            llm.n_tokens = start + len(chunk)
        self.evaluated_tokens += len(tokens) - n_past
        return out

    def _state(self, i: int) -> np.ndarray:
        pointer = self._embeddings_ith(self.llm._ctx.ctx, i)
        return np.ctypeslib.as_array(pointer, shape=(self.llm.n_embd(),)).copy()


@dataclass
class LikelihoodScorer:
    """Mean and min token log-probability of each step under a (strong) model.

    With ``hidden`` (``mean`` over the step's tokens, or the ``last`` token's) the features also carry the
    model's final-layer state of the step from the same prefill, for a probe fitted on labelled steps
    (``composite``). Per-step results are memoised by the exact text up to the step's end, so re-scoring a
    history only evaluates the steps that are new.
    """

    model: TokenLogprobs
    statistic: str = "mean"
    prompt: prompts.PromptFormat = prompts.TRIM_V0  # the demo's measurements used this format
    name: str = "likelihood"
    feature_names: tuple[str, ...] = ("lik_mean", "lik_min")
    hidden: str | None = None
    memo_size: int = 4096

    def __post_init__(self) -> None:
        check_statistic(self.statistic, self.name)
        if self.hidden is not None:
            if self.hidden not in HIDDEN:
                raise ConfigError(f"likelihood option hidden is one of {sorted(HIDDEN)}, got {self.hidden!r}")
            if not self.model.hidden:
                raise ConfigError("likelihood with hidden needs TokenLogprobs(..., hidden=True)")
            width = self.model.llm.n_embd()
            self.feature_names = ("lik_mean", "lik_min", *(f"hidden_{self.hidden}_{i}" for i in range(width)))
        self._lock = threading.Lock()
        self._memo: OrderedDict[str, tuple[float, ...]] = OrderedDict()

    def _compute(self, problem: Problem, steps: Sequence[Step]) -> Features:
        texts = [s.text for s in steps]
        chat = prompts.messages(problem, texts, self.prompt)
        text = prompts.render_chatml(chat)
        at = len(text) - len(chat[-1].content) + len(self.prompt.steps_header)
        spans, keys = [], []
        for step_text in texts:
            spans.append((at, at + len(step_text)))
            keys.append(hashlib.blake2b(text[: at + len(step_text)].encode(), digest_size=16).hexdigest())
            at += len(step_text) + len(prompts.SEPARATOR)
        todo = [i for i, k in enumerate(keys) if k not in self._memo]
        with self._lock:
            logprobs, states, n_prompt = self.model.span_states(text, [spans[i] for i in todo])
        for i, lps, state in zip(todo, logprobs, states, strict=True):
            extra = HIDDEN[self.hidden](state) if self.hidden else ()
            self._memo[keys[i]] = (*logprob_stats(lps), *extra)
        for k in keys:
            self._memo.move_to_end(k)
        while len(self._memo) > self.memo_size:
            self._memo.popitem(last=False)
        rows = tuple(self._memo[k] for k in keys)
        return Features(self.feature_names, rows, prompt_tokens=n_prompt if todo else 0, calls=1 if todo else 0)

    async def features(self, problem: Problem, steps: Sequence[Step]) -> Features:
        return await asyncio.to_thread(self._compute, problem, steps)

    async def score(self, problem: Problem, steps: Sequence[Step]) -> Scores:
        feats = await self.features(problem, steps)
        return feats.to_scores([math.exp(v) for v in feats.column(f"lik_{self.statistic}")])

    async def aclose(self) -> None:
        self.model.close()


def likelihood_scorer(config: ScorerConfig) -> LikelihoodScorer:
    """Registry factory (``kind: likelihood``): ``model`` is a catalog name or a .gguf path (default: the
    CPU demo's strong model); options ``statistic`` (mean|min), ``hidden`` (mean|last: add the step's hidden
    state to the features), ``n_ctx``, ``n_threads``, ``prompt`` (the run's prompt format, filled in by
    ``runner.build_engine``; default ``trim-v0``, what the demo measured)."""
    from trimroute.models import pull_model

    options: dict[str, Any] = dict(config.options)
    statistic = options.pop("statistic", "mean")
    n_ctx, n_threads = int(options.pop("n_ctx", 4096)), options.pop("n_threads", None)
    prompt = prompts.prompt_format(str(options.pop("prompt", prompts.TRIM_V0.name)))
    hidden = options.pop("hidden", None)
    if options:
        raise ConfigError(
            f"scorer 'likelihood' options are statistic, hidden, n_ctx, n_threads, prompt; got {sorted(options)}"
        )
    path = pull_model(config.model or DEFAULT_MODEL)
    model = TokenLogprobs(path, n_ctx=n_ctx, n_threads=n_threads, hidden=hidden is not None)
    return LikelihoodScorer(model, statistic=statistic, prompt=prompt, hidden=hidden)
