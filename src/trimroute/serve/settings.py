"""Server settings: the ``serve:`` section of a ``trim run`` config file.

The same file that drives ``trim run`` (weak, strong, scorer, engine, policy) drives the server; the
server reads one more section::

    serve:
      routers: {trim-pomdp-lam0.15: "pomdp:tables/lam0.15", trim-agg-math: "agg:policies/math"}
      api_keys_env: TRIM_API_KEYS      # comma-separated bearer keys
      scorer_fallback: weak            # weak | strong | none, used while the scorer is down

Request limits come from the ``engine`` section (``max_steps``, ``max_solution_tokens``, ``budget``):
a request may lower them, never raise them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from trimroute.config import RunConfig, from_dict, load_file
from trimroute.errors import ConfigError

__all__ = ["FALLBACKS", "PASS_THROUGHS", "ServeSettings", "ServerConfig", "load_server_config"]

PASS_THROUGHS = ("weak", "strong")
FALLBACKS = ("none", "weak", "strong")


@dataclasses.dataclass(frozen=True)
class ServeSettings:
    """Operations of ``trim serve``.

    Attributes:
        routers: extra model names mapped to policy specs (``trim-thr-<k>``, ``weak``, ``strong`` and
            ``trim``, the config's ``policy``, are always served).
        api_keys_env: environment variable with comma-separated bearer keys.
        api_keys_file: file with one bearer key per line. No key from either = open server.
        max_body_bytes: larger request bodies get 413.
        max_pending: requests admitted at once (running or queued on the backends); more get 503.
        request_timeout_s: a request still routing after this long gets 504 and its backend calls stop.
        scorer_fallback: policy used while the scorer is down (``none`` = answer 502 instead).
        scorer_retry_s: after a scorer failure, requests use the fallback for this long, then try again.
        health_timeout_s: timeout of the reachability probes of ``GET /health``.
        log_prompts: put prompts and answers in the request log (off: logs carry only counts).
    """

    routers: Mapping[str, str] = dataclasses.field(default_factory=dict)
    api_keys_env: str | None = "TRIM_API_KEYS"
    api_keys_file: str | None = None
    max_body_bytes: int = 1_000_000
    max_pending: int = 1024
    request_timeout_s: float = 600.0
    scorer_fallback: str = "none"
    scorer_retry_s: float = 30.0
    health_timeout_s: float = 2.0
    log_prompts: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.routers, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in self.routers.items()
        ):
            raise ConfigError("serve.routers must map model names to policy specs, e.g. {trim-agg-math: 'agg:DIR'}")
        reserved = sorted(set(self.routers) & {*PASS_THROUGHS, "trim"})
        if reserved:
            raise ConfigError(f"serve.routers cannot redefine the built-in model {reserved[0]!r}")
        if self.scorer_fallback not in FALLBACKS:
            raise ConfigError(
                f"serve.scorer_fallback must be one of {', '.join(FALLBACKS)}, got {self.scorer_fallback!r}"
            )
        for name in ("max_body_bytes", "max_pending"):
            if getattr(self, name) < 1:
                raise ConfigError(f"serve.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("request_timeout_s", "scorer_retry_s", "health_timeout_s"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"serve.{name} must be > 0 seconds, got {getattr(self, name)}")


@dataclasses.dataclass(frozen=True)
class ServerConfig:
    """Everything ``trim serve`` needs: the ``trim run`` config plus the ``serve`` section."""

    run: RunConfig = dataclasses.field(default_factory=RunConfig)
    serve: ServeSettings = dataclasses.field(default_factory=ServeSettings)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> ServerConfig:
        """Split a config mapping into its ``serve`` section and the rest (a ``RunConfig``); typos are rejected."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"config must be a mapping, got {type(data).__name__}")
        rest = dict(data)
        serve = rest.pop("serve", None)
        if serve is None:  # absent, or an empty ``serve:`` in YAML
            serve = {}
        return cls(run=from_dict(RunConfig, rest), serve=from_dict(ServeSettings, serve, "serve."))


def load_server_config(path: str | Path) -> ServerConfig:
    """Read a YAML/TOML config file for ``trim serve``."""
    return ServerConfig.from_mapping(load_file(path))
