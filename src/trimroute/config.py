"""Configuration: frozen dataclass sections, YAML/TOML files, dotted overrides that reject typos.

Validation does no I/O and never exits; it raises ``ConfigError`` with the offending key.

Configuration identity is declared here once: a field marked ``where`` says where or how fast something
runs (a URL, a key variable, a timeout, a thread count, a model file's location, the concurrency), never
what it computes. ``identity`` drops those fields; the call cache keys each backend's calls by it, and a run
directory resumes only under the same ``run_identity``. A fitted scorer ``artifact`` is identified by its
content, not its path: refitting it in place must not reuse the old fit's cached scores.

A file looks like (``base_urls`` lists replicas of one model, see docs/replicas.md)::

    policy: thr:0.7
    weak:   {kind: openai, base_urls: [http://gpu0:8000/v1, http://gpu1:8000/v1], model: Qwen/Qwen2.5-1.5B-Instruct}
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

from trimroute import prompts
from trimroute.errors import ConfigError
from trimroute.models import sha256_file
from trimroute.types import ROLES

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

T = TypeVar("T")


# Backend options that say where or how fast a backend runs, not what it computes (see ``identity``).
WHERE_OPTIONS = frozenset({"model_path", "n_threads", "backoff_s", "affinity"})


def _check_urls(section: BackendConfig | ScorerConfig) -> None:
    """``base_url`` is one URL, ``base_urls`` a non-empty list of distinct ones (replicas), never both."""
    if section.base_url is not None and not isinstance(section.base_url, str):
        raise ConfigError(f"base_url takes one URL, got {section.base_url!r}; list replicas under base_urls")
    if section.base_urls is None:
        return
    urls = section.base_urls
    if isinstance(urls, str) or not all(isinstance(u, str) for u in urls):
        raise ConfigError(f"base_urls must be a list of URLs, e.g. [http://a:8000/v1, http://b:8000/v1], got {urls!r}")
    if not urls:
        raise ConfigError("base_urls is empty: list the replicas' URLs, or give one base_url")
    if section.base_url is not None:
        raise ConfigError("give base_url or base_urls, not both (base_urls lists every replica)")
    bad = [u for u in urls if not u.startswith(("http://", "https://"))]
    if bad:
        raise ConfigError(f"base_urls entries must start with http:// or https://, got {bad[0]!r}")
    twice = sorted({u for u in urls if urls.count(u) > 1})
    if twice:
        raise ConfigError(f"base_urls lists {twice[0]!r} twice")
    object.__setattr__(section, "base_urls", tuple(urls))  # a YAML list becomes a tuple: the section stays immutable


def _urls(section: BackendConfig | ScorerConfig) -> tuple[str, ...]:
    return section.base_urls or ((section.base_url,) if section.base_url else ())


def _where(default: Any) -> Any:
    """A field that says where or how fast something runs; left out of ``identity``."""
    if callable(default):
        return dataclasses.field(default_factory=default, metadata={"where": True})
    return dataclasses.field(default=default, metadata={"where": True})


@dataclasses.dataclass(frozen=True)
class BackendConfig:
    """A generator endpoint. ``kind`` names a registered generator (``openai``, ``llamacpp``, ...)."""

    kind: str = "openai"
    model: str = ""
    base_url: str | None = _where(None)
    base_urls: tuple[str, ...] | None = _where(None)  # replicas of the same model, instead of base_url
    api: str = "completions"  # completions (template rendered locally) | chat (assistant pre-fill)
    api_key_env: str | None = _where("OPENAI_API_KEY")
    chat_template: str = "auto"  # auto (the model's own), chatml (builtin fallback), a Jinja file or model folder
    temperature: float = 0.7
    top_p: float = 0.8
    top_k: int = 20
    timeout_s: float = _where(120.0)
    max_retries: int = _where(4)
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # backend-specific

    @property
    def urls(self) -> tuple[str, ...]:
        """Every replica's base URL (``base_urls``, or ``base_url`` alone)."""
        return _urls(self)

    def __post_init__(self) -> None:
        _check_urls(self)
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
    base_url: str | None = _where(None)
    base_urls: tuple[str, ...] | None = _where(None)  # replicas of the same model, instead of base_url
    api_key_env: str | None = _where("OPENAI_API_KEY")
    timeout_s: float = _where(120.0)
    max_retries: int = _where(4)
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # scorer-specific

    @property
    def urls(self) -> tuple[str, ...]:
        """Every replica's base URL (``base_urls``, or ``base_url`` alone)."""
        return _urls(self)

    def __post_init__(self) -> None:
        _check_urls(self)


@dataclasses.dataclass(frozen=True)
class EngineConfig:
    """Rules of one routing run. Defaults follow the official setup (DESIGN.md §4)."""

    max_steps: int = 30
    max_step_tokens: int = 2048
    max_solution_tokens: int = 4096  # per-problem cap on the accepted solution's tokens
    budget: int | None = None  # hard cap on strong tokens per problem
    degenerate_retries: int = 1  # the official code retries a degenerate step once
    seed: int | None = 0  # None = unseeded sampling
    concurrency: int = _where(8)  # problems in flight
    backend_concurrency: Mapping[str, int] = _where(lambda: {"weak": 8, "strong": 8, "scorer": 8})
    weak_logprobs: bool = False  # ask the weak model for token logprobs (confidence scorers use them)
    prompt: str = prompts.DEFAULT  # a name in prompts.FORMATS
    # start the weak model's next step while the newest proposal is scored (``Engine.solve``): the same
    # trajectories, sooner, on servers that run calls concurrently
    speculate: bool = _where(True)
    # while the weak model writes a step, send the strong model the prompt a regeneration of that step would
    # send (one token, thrown away), so a vLLM/SGLang prefix cache already holds it: no trajectory changes,
    # the strong server prefills every step's prefix (``usage.prefill``); off unless regenerations are slow
    shadow_prefill: bool = _where(False)

    def __post_init__(self) -> None:
        for name in ("max_steps", "max_step_tokens", "max_solution_tokens", "concurrency"):
            if getattr(self, name) < 1:
                raise ConfigError(f"engine.{name} must be >= 1, got {getattr(self, name)}")
        if self.budget is not None and self.budget < 0:
            raise ConfigError(f"engine.budget must be >= 0 strong tokens, got {self.budget}")
        prompts.prompt_format(self.prompt)
        if self.degenerate_retries < 0:
            raise ConfigError("engine.degenerate_retries must be >= 0")
        unknown = set(self.backend_concurrency) - set(ROLES)
        if unknown or any(v < 1 for v in self.backend_concurrency.values()):
            raise ConfigError(
                f"engine.backend_concurrency takes weak/strong/scorer >= 1, got {dict(self.backend_concurrency)}"
            )


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Everything ``trim run`` needs: the two models, the scorer, the policy and the engine rules."""

    weak: BackendConfig = dataclasses.field(default_factory=BackendConfig)
    strong: BackendConfig = dataclasses.field(default_factory=BackendConfig)
    scorer: ScorerConfig = dataclasses.field(default_factory=ScorerConfig)
    policy: str = "thr:0.5"
    engine: EngineConfig = dataclasses.field(default_factory=EngineConfig)


def identity(section: BackendConfig | ScorerConfig | EngineConfig) -> dict[str, Any]:
    """What a config section computes, without where or how fast it runs (the ``where`` fields and
    ``WHERE_OPTIONS``): the call cache's key material, and what a resumed run must keep."""
    out = {}
    for f in dataclasses.fields(section):
        if f.metadata.get("where"):
            continue
        value = getattr(section, f.name)
        if f.name == "options":
            value = {k: v for k, v in value.items() if k not in WHERE_OPTIONS}
            if "artifact" in value:
                value["artifact"] = _content_digest(value["artifact"])
        out[f.name] = value
    return json.loads(json.dumps(out, default=dict))


def _content_digest(path: str) -> str:
    """``sha256:`` of the file at ``path``; the path itself where it cannot be read (building the
    backend then fails with the error that names it)."""
    try:
        return "sha256:" + sha256_file(Path(path))
    except (OSError, TypeError):
        return str(path)


def run_identity(config: RunConfig) -> dict[str, Any]:
    """What a run of ``config`` computes whatever its policy: models, sampling, scorer, engine rules."""
    return {role: identity(getattr(config, role)) for role in (*ROLES, "engine")}


def sim_config(preset: str, engine: EngineConfig | None = None) -> RunConfig:
    """Both models and the scorer simulated by a calibrated preset (``sim.backend``), e.g. ``qwen1.5b-7b``."""
    return RunConfig(
        weak=BackendConfig(kind="sim", model=f"sim:{preset}", options={"preset": preset, "role": "weak"}),
        strong=BackendConfig(kind="sim", model=f"sim:{preset}", options={"preset": preset, "role": "strong"}),
        scorer=ScorerConfig(kind="sim", model=f"sim:{preset}", options={"preset": preset}),
        # the simulator's draws are keyed by the prompt; its presets and results were made with trim-v0
        engine=engine or EngineConfig(prompt="trim-v0"),
    )


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


def _merge(base: dict[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """``top`` over ``base``, section by section."""
    out = dict(base)
    for key, value in top.items():
        out[key] = _merge(out[key], value) if isinstance(value, Mapping) and isinstance(out.get(key), dict) else value
    return out


def load_run_config(
    path: str | Path | None = None, overrides: Mapping[str, Any] | None = None, base: RunConfig | None = None
) -> RunConfig:
    """A ``RunConfig``: ``base`` (e.g. ``sim_config``), then an optional file, then dotted overrides (flags
    win over the file, the file over the base)."""
    data: dict[str, Any] = _merge(to_dict(base) if base else {}, load_file(path) if path else {})
    for key, value in (overrides or {}).items():
        if value is not None:
            set_dotted(data, key, value)
    return from_dict(RunConfig, data)
