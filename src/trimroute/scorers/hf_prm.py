"""The PRMs of ``qwen-prm`` and ``math-shepherd`` loaded locally with transformers (extra ``[hf]``).

Same inputs and the same scores as over vLLM's pooling API (DESIGN.md §4):

- ``format: qwen`` (Qwen2.5-Math-PRM): the model's chat template over system = the run's instruction, user =
  question, assistant = steps each followed by ``<extra_0>``; the model's head has two classes and the
  score is softmax(logits)[1] at each ``<extra_0>`` (loaded with ``AutoModel``, ``trust_remote_code``).
- ``format: math-shepherd``: ``"question Step i: ... ки"`` text into a causal LM; the score is the
  softmax over the logits of ``+`` and ``-`` only, P(+), at each ``ки``. The ids come from the
  tokenizer the way Math-Shepherd's model card gets them (override with ``positive_id``,
  ``negative_id``, ``step_tag_id``).

Inputs longer than ``max_length`` tokens are cut on the left; steps whose tag was cut score 1.0.
The forward pass runs in a worker thread, one at a time. Options: ``format`` (``qwen``), ``device``
(``cpu``), ``dtype`` (``float32``), ``max_length`` (4096), ``prompt`` / ``system`` (as for ``qwen-prm``),
``trust_remote_code`` (true), ``positive_id``, ``negative_id``, ``step_tag_id``.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from typing import Any

from trimroute.config import ScorerConfig
from trimroute.errors import ConfigError, ScorerError
from trimroute.scorers.math_shepherd import math_shepherd_text
from trimroute.scorers.qwen_prm import STEP_TAG as QWEN_TAG
from trimroute.scorers.qwen_prm import prm_system, qwen_prm_messages
from trimroute.types import Problem, Scores, Step

__all__ = ["HFPRMScorer"]

OPTIONS = ("format", "device", "dtype", "max_length", "prompt", "system", "trust_remote_code",
           "positive_id", "negative_id", "step_tag_id")  # fmt: skip
FORMATS = ("qwen", "math-shepherd")


class HFPRMScorer:
    """A step-level PRM run in-process with transformers.

    ``model`` and ``tokenizer`` may be given directly (already loaded); otherwise ``config.model`` (a
    Hugging Face id or a local folder) is loaded.
    """

    name = "hf-prm"

    def __init__(self, config: ScorerConfig, *, model: Any = None, tokenizer: Any = None) -> None:
        opts = dict(config.options)
        unknown = sorted(set(opts) - set(OPTIONS))
        if unknown:
            raise ConfigError(f"unknown option {unknown[0]!r} for an hf-prm scorer; valid: {', '.join(OPTIONS)}")
        self.format = opts.get("format", "qwen")
        if self.format not in FORMATS:
            raise ConfigError(f"hf-prm option format must be one of {', '.join(FORMATS)}, got {self.format!r}")
        try:
            import torch
            import transformers
        except ImportError:
            raise ConfigError("the hf-prm scorer needs torch and transformers: pip install 'trimroute[hf]'") from None
        self._torch = torch
        self.system = prm_system(opts)
        self.max_length = int(opts.get("max_length", 4096))
        self.device = str(opts.get("device", "cpu"))
        if model is None or tokenizer is None:
            if not config.model:
                raise ConfigError("model is required for an hf-prm scorer (a Hugging Face id or a local folder)")
            remote = bool(opts.get("trust_remote_code", True))
            tokenizer = transformers.AutoTokenizer.from_pretrained(config.model, trust_remote_code=remote)
            auto = transformers.AutoModel if self.format == "qwen" else transformers.AutoModelForCausalLM
            dtype = getattr(torch, str(opts.get("dtype", "float32")))
            model = auto.from_pretrained(config.model, dtype=dtype, trust_remote_code=remote)
        self.tokenizer = tokenizer
        self.model = model.to(self.device).eval()
        self._lock = threading.Lock()
        if self.format == "qwen":
            self.tag_id = _token_id(tokenizer, QWEN_TAG, opts.get("step_tag_id"))
            self.class_ids: tuple[int, int] | None = None
        else:
            self.tag_id = _token_id(tokenizer, "ки", opts.get("step_tag_id"), last_piece=True)
            self.class_ids = _class_ids(tokenizer, opts.get("positive_id"), opts.get("negative_id"))

    def input_ids(self, problem: Problem, steps: Sequence[Step]) -> list[int]:
        """Token ids of the scored text, left-truncated to ``max_length``."""
        if self.format == "qwen":
            text = self.tokenizer.apply_chat_template(
                qwen_prm_messages(problem, steps, self.system), tokenize=False, add_generation_prompt=False
            )
            ids = self.tokenizer.encode(text, add_special_tokens=False)
        else:
            ids = self.tokenizer.encode(math_shepherd_text(problem, steps))
        return list(ids[-self.max_length :])

    def step_scores(self, logits: Any, ids: Sequence[int], n_steps: int) -> list[float]:
        """Scores at the tag positions of one sequence's logits ``[T, C]``; cut-off steps score 1.0."""
        torch = self._torch
        at = torch.tensor([i for i, t in enumerate(ids) if t == self.tag_id], dtype=torch.long)
        rows = logits[at].float()
        if self.class_ids is None:  # two-class head: [wrong, right]
            probs = rows.softmax(-1)[:, 1]
        else:  # LM head: P(+) among {+, -}
            probs = rows[:, list(self.class_ids)].softmax(-1)[:, 0]
        found = [float(p) for p in probs]
        if len(found) > n_steps:
            raise ScorerError(
                f"hf-prm found {len(found)} step tags for {n_steps} steps; does the system prompt contain one?"
            )
        return [1.0] * (n_steps - len(found)) + found

    async def score(self, problem: Problem, steps: Sequence[Step]) -> Scores:
        ids = self.input_ids(problem, steps)
        values = await asyncio.to_thread(self._forward_scores, ids, len(steps))
        return Scores(tuple(values), prompt_tokens=len(ids), calls=1)

    def _forward_scores(self, ids: list[int], n_steps: int) -> list[float]:
        torch = self._torch
        with self._lock, torch.inference_mode():
            out = self.model(input_ids=torch.tensor([ids], device=self.device))
            logits = out.logits if hasattr(out, "logits") else out[0]
            return self.step_scores(logits[0], ids, n_steps)

    async def aclose(self) -> None:
        return None


def _token_id(tokenizer: Any, text: str, override: Any, last_piece: bool = False) -> int:
    if override is not None:
        return int(override)
    if last_piece:
        return int(tokenizer.encode(text, add_special_tokens=False)[-1])
    tid = tokenizer.convert_tokens_to_ids(text)
    if tid is None or tid == tokenizer.unk_token_id:
        raise ConfigError(f"the tokenizer has no {text!r} token; set options.step_tag_id")
    return int(tid)


def _class_ids(tokenizer: Any, positive: Any, negative: Any) -> tuple[int, int]:
    if positive is not None and negative is not None:
        return int(positive), int(negative)
    ids = tokenizer.encode("+ -", add_special_tokens=False)
    if len(ids) != 2:
        raise ConfigError("cannot find single tokens for '+' and '-'; set options.positive_id and negative_id")
    return int(ids[0]), int(ids[1])
