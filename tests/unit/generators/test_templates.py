"""Local chat templates: builtin ChatML and Jinja files rendered HF-style with the last message open."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from trimroute import prompts
from trimroute.errors import ConfigError
from trimroute.generators.templates import ChatTemplate, from_tokenizer_config, load_template
from trimroute.types import Problem

MESSAGES = prompts.messages(Problem("p", "What is 2 + 3?"), ["2 + 3 = 5."], prompts.TRIM_V0)
CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def test_a_jinja_chatml_template_renders_like_the_builtin(tmp_path: Path) -> None:
    path = tmp_path / "chat_template.jinja"
    path.write_text(CHATML)
    assert load_template(str(path)).render(MESSAGES) == load_template("chatml").render(MESSAGES)
    assert load_template("chatml").render(MESSAGES).endswith("<|im_start|>assistant\nSolution:\n\n2 + 3 = 5.\n\n")


def test_a_template_that_strips_content_still_ends_with_the_exact_prefill() -> None:
    trimming = (
        "{{ bos_token }}{% for m in messages %}[{{ m['role'] | upper }}] {{ m['content'] | trim }}{{ eos_token }}"
        "{% endfor %}"
    )
    text = ChatTemplate(trimming, {"bos_token": "<s>", "eos_token": "</s>"}).render(MESSAGES)
    assert text.startswith("<s>[USER] Solve")
    assert text.endswith("</s>[ASSISTANT] Solution:\n\n2 + 3 = 5.\n\n")


def test_template_errors_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="must be 'auto', 'chatml', a Jinja template file or a model folder"):
        load_template(str(tmp_path / "missing.jinja"))
    with pytest.raises(ConfigError, match="is not valid Jinja"):
        ChatTemplate("{% for %}")
    with pytest.raises(ConfigError, match="failed to render: roles must alternate"):
        ChatTemplate("{{ raise_exception('roles must alternate') }}").render(MESSAGES)
    with pytest.raises(ConfigError, match="does not reproduce the last message"):
        ChatTemplate("{% for m in messages %}{{ m['role'] }}{% endfor %}").render(MESSAGES)


def test_a_model_folder_gives_its_template_and_special_tokens(tmp_path: Path) -> None:
    config = {"chat_template": "{{ bos_token }}" + CHATML, "bos_token": {"content": "<s>"}, "eos_token": "</s>"}
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    text = load_template(str(tmp_path)).render(MESSAGES)
    assert text == "<s>" + load_template("chatml").render(MESSAGES)
    # chat_template.jinja wins over the config's template, as in transformers
    (tmp_path / "chat_template.jinja").write_text(CHATML)
    assert load_template(str(tmp_path)).render(MESSAGES) == load_template("chatml").render(MESSAGES)
    named = {"chat_template": [{"name": "tool_use", "template": "x"}, {"name": "default", "template": CHATML}]}
    assert from_tokenizer_config(named) is not None
    assert from_tokenizer_config({}) is None
