"""Chat templates rendered locally, with the last (assistant) message left open for continuation.

Used by every route that sends raw text (``/v1/completions``, llama.cpp in-process), so both models
continue exactly the same bytes (DESIGN.md §4). The template is the model's own (``chat_template:
auto``, the default) found where the model keeps it:

- a GGUF file's metadata (``tokenizer.chat_template``): the llamacpp backend's, or the file the model's
  name is (``llama_cpp.server --model FILE`` serves it under that path),
- a Hugging Face model folder (``chat_template.jinja`` or ``tokenizer_config.json``), when the model's
  name is such a folder, as when a vLLM server runs ``--model DIR``, or is in the local Hugging Face cache,
- the server, when it offers one (llama.cpp's ``/props``; vLLM's ``/tokenizer_info`` when started with
  ``--enable-tokenizer-info-endpoint``).

``chat_template`` may also name such a folder or a Jinja file, or ``chatml``: the builtin fallback
(ChatML without a default system turn). Jinja templates are rendered the way ``transformers`` renders
them: sandboxed, ``trim_blocks``/``lstrip_blocks``, ``add_generation_prompt`` false, and everything
after the final message cut off (``continue_final_message``), so the pre-fill's exact tail (the trailing
``"\\n\\n"``) is kept even by templates that strip message text.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from jinja2 import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from trimroute import prompts
from trimroute.errors import ConfigError
from trimroute.types import Message

__all__ = ["AUTO", "BUILTIN", "ChatTemplate", "from_folder", "from_tokenizer_config", "load_template"]

BUILTIN = "chatml"
AUTO = "auto"
GGUF_KEY = "tokenizer.chat_template"
_MARK = "\x00TRIM_CONTINUE_FINAL_MESSAGE\x00"


class ChatTemplate:
    """A chat template that renders ``messages`` with the last message open.

    Args:
        source: Jinja source, or None for the builtin ChatML.
        variables: extra template variables, e.g. ``bos_token`` / ``eos_token`` or
            ``enable_thinking`` (a model's ``chat_template_kwargs``).
        name: where the template came from (for error messages).
    """

    def __init__(self, source: str | None = None, variables: Mapping[str, Any] | None = None, name: str = BUILTIN):
        self.name = name
        self.source = source
        self.variables = dict(variables or {})
        self._template = None
        if source is not None:
            env = ImmutableSandboxedEnvironment(
                trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"]
            )
            env.globals["raise_exception"] = _raise_exception
            env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
            try:
                self._template = env.from_string(source)
            except TemplateError as e:
                raise ConfigError(f"chat template {name!r} is not valid Jinja: {e}") from None

    def with_variables(self, variables: Mapping[str, Any]) -> ChatTemplate:
        """The same template with more variables (those given win)."""
        return ChatTemplate(self.source, {**self.variables, **variables}, self.name)

    def render(self, messages: Sequence[Message]) -> str:
        """The text a model continues: all messages, the last one open and byte-exact."""
        if self._template is None:
            return prompts.render_chatml(messages)
        # as transformers does for continue_final_message: mark the end of the final message, render, cut
        # there; the mark also keeps a template that strips content from stripping the pre-fill's tail
        final = messages[-1].content
        marked = [{"role": m.role, "content": m.content} for m in messages]
        marked[-1]["content"] = final + _MARK
        try:
            text = self._template.render(messages=marked, add_generation_prompt=False, **self.variables)
        except TemplateError as e:
            raise ConfigError(f"chat template {self.name!r} failed to render: {e}") from None
        at = text.rfind(_MARK)
        if at < 0 or not text[:at].endswith(final):
            raise ConfigError(
                f"chat template {self.name!r} does not reproduce the last message's text; "
                "use a template that renders message content verbatim"
            )
        return text[:at]


def load_template(spec: str, variables: Mapping[str, Any] | None = None) -> ChatTemplate:
    """``"chatml"`` (builtin), a Jinja template file, or a Hugging Face model folder or its
    ``tokenizer_config.json``. ``"auto"`` is resolved by the backend (it knows where its model lives)."""
    if spec == BUILTIN:
        return ChatTemplate()
    path = Path(spec).expanduser()
    if path.suffix == ".gguf" and path.is_file():
        found = from_gguf_file(path, variables)
        if found is None:
            raise ConfigError(f"{spec!r} carries no chat template ({GGUF_KEY})")
        return found
    if path.is_dir():
        found = from_folder(path, variables)
        if found is None:
            raise ConfigError(f"{spec!r} has no chat_template.jinja and no chat_template in tokenizer_config.json")
        return found
    if path.name == "tokenizer_config.json" and path.is_file():
        found = from_tokenizer_config(json.loads(path.read_text()), variables, str(path))
        if found is None:
            raise ConfigError(f"{spec!r} has no chat_template")
        return found
    if not path.is_file():
        raise ConfigError(
            f"chat_template must be {AUTO!r}, {BUILTIN!r}, a Jinja template file or a model folder; "
            f"{spec!r} is none of these"
        )
    return ChatTemplate(path.read_text(), variables, name=str(path))


def from_folder(folder: Path, variables: Mapping[str, Any] | None = None) -> ChatTemplate | None:
    """The template of a Hugging Face model folder (``chat_template.jinja`` wins, as in transformers)."""
    config_file = folder / "tokenizer_config.json"
    config = json.loads(config_file.read_text()) if config_file.is_file() else {}
    jinja = folder / "chat_template.jinja"
    if jinja.is_file():
        config = {**config, "chat_template": jinja.read_text()}
    return from_tokenizer_config(config, variables, str(folder))


def from_tokenizer_config(
    config: Mapping[str, Any], variables: Mapping[str, Any] | None = None, name: str = "tokenizer_config"
) -> ChatTemplate | None:
    """The template in a tokenizer config (a string, or a list of named templates: ``default``), with its
    special tokens as variables."""
    source = config.get("chat_template")
    if isinstance(source, list):  # [{"name": "default", "template": ...}, {"name": "tool_use", ...}]
        source = next((t.get("template") for t in source if t.get("name") == "default"), None)
    if not isinstance(source, str) or not source:
        return None
    tokens = {k: _token_text(config.get(k)) for k in ("bos_token", "eos_token", "pad_token", "unk_token")}
    return ChatTemplate(source, {**{k: v for k, v in tokens.items() if v is not None}, **(variables or {})}, name)


def from_gguf_metadata(
    metadata: Mapping[str, str], variables: Mapping[str, Any] | None = None, name: str = "gguf"
) -> ChatTemplate | None:
    """The template a GGUF file carries in its metadata (``tokenizer.chat_template``)."""
    source = metadata.get(GGUF_KEY)
    return ChatTemplate(source, variables, f"{name} ({GGUF_KEY})") if source else None


def from_gguf_file(path: Path, variables: Mapping[str, Any] | None = None) -> ChatTemplate | None:
    """The template in a GGUF file's metadata, with its special tokens (needs llama-cpp-python; reads the
    vocabulary only)."""
    try:
        from llama_cpp import Llama
    except ImportError:
        raise ConfigError(f"reading the chat template of {str(path)!r} needs llama-cpp-python") from None
    llm = Llama(model_path=str(path), vocab_only=True, verbose=False)
    try:
        return from_gguf_metadata(llm.metadata, {**gguf_special_tokens(llm), **(variables or {})}, path.name)
    finally:
        llm.close()


def gguf_special_tokens(llm: Any) -> dict[str, str]:
    """``bos_token`` / ``eos_token`` of a loaded ``llama_cpp.Llama``, as templates use them."""
    ids = {"bos_token": llm.token_bos(), "eos_token": llm.token_eos()}
    return {k: llm.detokenize([t], special=True).decode("utf-8", "replace") for k, t in ids.items()}


def from_hf_cache(model: str, variables: Mapping[str, Any] | None = None) -> ChatTemplate | None:
    """The template of a Hugging Face model id already in the local cache (no download)."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    for filename in ("chat_template.jinja", "tokenizer_config.json"):
        try:
            hit = try_to_load_from_cache(model, filename)
        except ValueError:  # not a valid repo id
            return None
        if isinstance(hit, str):
            return from_folder(Path(hit).parent, variables)
    return None


def _token_text(token: Any) -> str | None:
    """A special token as written in tokenizer configs: a string or ``{"content": ...}``."""
    if isinstance(token, Mapping):
        token = token.get("content")
    return token if isinstance(token, str) else None


def _raise_exception(message: str) -> None:
    raise TemplateError(message)
