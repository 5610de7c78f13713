"""Configuration: frozen dataclass sections, YAML/TOML files, dotted overrides that reject typos.

Validation does no I/O and never exits; it raises ``ConfigError`` with the offending key.

A file looks like::

    policy: thr:0.7
    weak:   {kind: openai, base_url: http://localhost:8000/v1, model: Qwen/Qwen2.5-1.5B-Instruct}
    strong: {kind: openai, base_url: http://localhost:8001/v1, model: Qwen/Qwen2.5-7B-Instruct}
    scorer: {kind: qwen-prm, base_url: http://localhost:8002, model: Qwen/Qwen2.5-Math-PRM-7B}
    engine: {max_steps: 30, budget: 2000, seed: 0}
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar, get_type_hints

import yaml

from trimroute.engine import EngineConfig
from trimroute.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class BackendConfig:
    """A generator endpoint. ``kind`` names a registered generator (``openai``, ``llamacpp``, ...)."""

    kind: str = "openai"
    model: str = ""
    base_url: str | None = None
    api: str = "completions"  # completions (template rendered locally) | chat (assistant pre-fill)
    api_key_env: str | None = "OPENAI_API_KEY"
    chat_template: str = "auto"  # auto (the model's own), chatml (builtin fallback), a Jinja file or model folder
    temperature: float = 0.7
    top_p: float = 0.8
    top_k: int = 20
    timeout_s: float = 120.0
    max_retries: int = 4
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # backend-specific

    def __post_init__(self) -> None:
        if self.api not in ("completions", "chat"):
            raise ConfigError(f"api must be 'completions' or 'chat', got {self.api!r}")
        if not 0.0 <= self.top_p <= 1.0:
            raise ConfigError(f"top_p must be in [0, 1], got {self.top_p}")
        if self.temperature < 0:
            raise ConfigError(f"temperature must be >= 0, got {self.temperature}")
        if self.timeout_s <= 0 or self.max_retries < 0:
            raise ConfigError("timeout_s must be > 0 and max_retries >= 0")


@dataclasses.dataclass(frozen=True)
class ScorerConfig:
    """A step scorer. ``kind`` names a registered scorer (``qwen-prm``, ``judge``, ``none``, ...)."""

    kind: str = "none"
    model: str = ""
    base_url: str | None = None
    api_key_env: str | None = "OPENAI_API_KEY"
    timeout_s: float = 120.0
    max_retries: int = 4
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # scorer-specific


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Everything ``trim run`` needs: the two models, the scorer, the policy and the engine rules."""

    weak: BackendConfig = dataclasses.field(default_factory=BackendConfig)
    strong: BackendConfig = dataclasses.field(default_factory=BackendConfig)
    scorer: ScorerConfig = dataclasses.field(default_factory=ScorerConfig)
    policy: str = "thr:0.5"
    engine: EngineConfig = dataclasses.field(default_factory=EngineConfig)


def from_dict(cls: type[T], data: Mapping[str, Any], where: str = "") -> T:
    """Build dataclass ``cls`` from a mapping, recursing into sections and rejecting unknown keys."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where or 'config'} must be a mapping, got {type(data).__name__}")
    hints = get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"unknown config key {where + unknown[0]!r}; valid keys: {', '.join(sorted(known))}")
    kwargs = {}
    for key, value in data.items():
        hint = hints[key]
        if dataclasses.is_dataclass(hint) and isinstance(hint, type):
            value = from_dict(hint, value, f"{where}{key}.")
        kwargs[key] = value
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise ConfigError(f"bad value in {where or 'config'}: {e}") from None


def to_dict(config: Any) -> dict[str, Any]:
    """Plain-data form of a config (JSON/YAML serialisable)."""
    return json.loads(json.dumps(dataclasses.asdict(config), default=dict))


def load_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML (.yaml/.yml) or TOML (.toml) config file into a mapping."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"cannot read config file {str(path)!r}: {e.strerror}") from None
    try:
        data = tomllib.loads(text) if path.suffix == ".toml" else yaml.safe_load(text)
    except (yaml.YAMLError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"config file {str(path)!r} is not valid {path.suffix[1:] or 'YAML'}: {e}") from None
    return data or {}


def set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    """Set ``a.b.c = value`` in a nested mapping (creating sections)."""
    parts = key.split(".")
    node = data
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"cannot set {key!r}: {part!r} is not a section")
    node[parts[-1]] = value


def parse_override(item: str) -> tuple[str, Any]:
    """``key=value`` with the value read as YAML (numbers, booleans, lists, null)."""
    key, sep, raw = item.partition("=")
    if not sep or not key:
        raise ConfigError(f"override {item!r} must look like section.key=value")
    try:
        return key.strip(), yaml.safe_load(raw)
    except yaml.YAMLError:
        return key.strip(), raw


def load_run_config(path: str | Path | None = None, overrides: Mapping[str, Any] | None = None) -> RunConfig:
    """A ``RunConfig`` from an optional file plus dotted overrides (flags win over the file)."""
    data: dict[str, Any] = load_file(path) if path else {}
    for key, value in (overrides or {}).items():
        if value is not None:
            set_dotted(data, key, value)
    return from_dict(RunConfig, data)
