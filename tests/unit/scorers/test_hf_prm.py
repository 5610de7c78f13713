"""The local transformers PRM on tiny randomly initialised models: inputs, tag positions, logits -> scores."""

from __future__ import annotations

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import (
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
    Qwen2ForTokenClassification,
)

from trimroute.config import ScorerConfig
from trimroute.errors import ConfigError
from trimroute.scorers import build_scorer
from trimroute.scorers.hf_prm import HFPRMScorer
from trimroute.types import Problem, Step

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
WORDS = ["<unk>", "<|im_start|>", "<|im_end|>", "<extra_0>", "ки", "+", "-", "Step", "1:", "2:", "3:"]
WORDS += [f"w{i}" for i in range(20)]
PROBLEM = Problem("p", "w1 w2 w3")
STEPS = [Step("w4 w5", "weak", 2), Step("w6", "weak", 1), Step("w7 w8 w9", "weak", 3)]


def tokenizer() -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", additional_special_tokens=["<|im_start|>", "<|im_end|>", "<extra_0>"]
    )
    fast.chat_template = CHATML
    return fast


def tiny_config() -> Qwen2Config:
    # Qwen2Config's annotated signature omits num_labels, which PretrainedConfig accepts at run time.
    return Qwen2Config(  # type: ignore[call-arg]
        vocab_size=len(WORDS), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=1, num_labels=2,
    )  # fmt: skip


def scorer(fmt: str, model: object, **options: object) -> HFPRMScorer:
    config = ScorerConfig(kind="hf-prm", options={"format": fmt, **options})
    return HFPRMScorer(config, model=model, tokenizer=tokenizer())


async def test_qwen_format_scores_softmax_class_one_at_each_extra_0() -> None:
    torch.manual_seed(0)
    model = Qwen2ForTokenClassification(tiny_config())
    s = scorer("qwen", model)
    ids = s.input_ids(PROBLEM, STEPS)
    tag = s.tokenizer.convert_tokens_to_ids("<extra_0>")
    assert ids.count(tag) == 3
    assert ids.count(s.tokenizer.convert_tokens_to_ids("<|im_start|>")) == 3  # system, user, assistant turns
    result = await s.score(PROBLEM, STEPS)
    with torch.inference_mode():
        logits = model(input_ids=torch.tensor([ids])).logits[0]
    expected = [float(logits[i].softmax(-1)[1]) for i, t in enumerate(ids) if t == tag]
    assert result.values == pytest.approx(tuple(expected), abs=1e-6)
    assert result.prompt_tokens == len(ids) and all(0.0 < v < 1.0 for v in result.values)


async def test_left_truncation_scores_cut_steps_one() -> None:
    torch.manual_seed(0)
    full = scorer("qwen", Qwen2ForTokenClassification(tiny_config())).input_ids(PROBLEM, STEPS)
    tag = tokenizer().convert_tokens_to_ids("<extra_0>")
    second_tag = [i for i, t in enumerate(full) if t == tag][1]
    keep = len(full) - second_tag - 1  # everything after the second step's tag: only the third tag is left
    s = scorer("qwen", Qwen2ForTokenClassification(tiny_config()), max_length=keep)
    result = await s.score(PROBLEM, STEPS)
    assert result.prompt_tokens == keep
    assert result.values[:2] == (1.0, 1.0) and 0.0 < result.values[2] < 1.0


async def test_math_shepherd_format_is_p_plus_among_plus_minus_at_each_tag() -> None:
    torch.manual_seed(1)
    model = Qwen2ForCausalLM(tiny_config())
    s = scorer("math-shepherd", model)
    ids = s.input_ids(PROBLEM, STEPS)
    tag, plus, minus = (s.tokenizer.convert_tokens_to_ids(t) for t in ("ки", "+", "-"))
    assert s.tag_id == tag and s.class_ids == (plus, minus) and ids.count(tag) == 3
    result = await s.score(PROBLEM, STEPS)
    with torch.inference_mode():
        logits = model(input_ids=torch.tensor([ids])).logits[0]
    expected = [float(logits[i, [plus, minus]].softmax(-1)[0]) for i, t in enumerate(ids) if t == tag]
    assert result.values == pytest.approx(tuple(expected), abs=1e-6)


def test_bad_options_fail_without_loading_anything() -> None:
    with pytest.raises(ConfigError, match="format must be one of qwen, math-shepherd"):
        build_scorer(ScorerConfig(kind="hf-prm", model="x", options={"format": "orm"}))
    with pytest.raises(ConfigError, match="model is required for an hf-prm scorer"):
        build_scorer(ScorerConfig(kind="hf-prm"))
