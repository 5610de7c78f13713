"""Chat templates rendered locally, with the last (assistant) message left open for continuation.

Used by every route that sends raw text (``/v1/completions``, llama.cpp in-process), so both models
continue exactly the same bytes (DESIGN.md §4). ``"chatml"`` is the builtin (Qwen2.5, SmolLM2); any
other value is a path to a Jinja chat template (a Hugging Face ``chat_template.jinja``), rendered the
way ``transformers`` renders it: sandboxed, ``trim_blocks``/``lstrip_blocks``, ``add_generation_prompt``
false, and everything after the final message cut off (``continue_final_message``). Templates often
strip the message text; the pre-fill's exact tail (the trailing ``"\\n\\n"``) is re-appended.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from jinja2 import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from trimroute import prompts
from trimroute.errors import ConfigError
from trimroute.types import Message

__all__ = ["ChatTemplate", "load_template"]

BUILTIN = "chatml"


class ChatTemplate:
    """A chat template that renders ``messages`` with the last message open.

    Args:
        source: Jinja source, or None for the builtin ChatML.
        variables: extra template variables, e.g. ``bos_token`` / ``eos_token``.
        name: where the template came from (for error messages).
    """

    def __init__(self, source: str | None = None, variables: Mapping[str, Any] | None = None, name: str = BUILTIN):
        self.name = name
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

    def render(self, messages: Sequence[Message]) -> str:
        """The text a model continues: all messages, the last one open and byte-exact."""
        if self._template is None:
            return prompts.render_chatml(messages)
        final = messages[-1].content
        try:
            text = self._template.render(
                messages=[{"role": m.role, "content": m.content} for m in messages],
                add_generation_prompt=False,
                **self.variables,
            )
        except TemplateError as e:
            raise ConfigError(f"chat template {self.name!r} failed to render: {e}") from None
        core = final.strip()
        at = text.rfind(core)
        if not core or at < 0:
            raise ConfigError(
                f"chat template {self.name!r} does not reproduce the last message's text; "
                "use a template that renders message content verbatim"
            )
        # cut what closes the final turn, then put back the exact pre-fill tail the template may have stripped
        return text[:at] + final[final.index(core) :]


def load_template(spec: str, variables: Mapping[str, Any] | None = None) -> ChatTemplate:
    """``"chatml"`` (builtin) or the path of a Jinja chat template file."""
    if spec == BUILTIN:
        return ChatTemplate()
    path = Path(spec).expanduser()
    if not path.is_file():
        raise ConfigError(
            f"chat_template must be {BUILTIN!r} or the path of a Jinja template file; {spec!r} is neither"
        )
    return ChatTemplate(path.read_text(), variables, name=str(path))


def _raise_exception(message: str) -> None:
    raise TemplateError(message)
