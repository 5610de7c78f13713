"""Model names of the server -> policies.

A request's ``model`` names a router, in the vocabulary of ``POLICIES`` (like RouteLLM's
``router-bert-0.7``): ``weak`` / ``strong`` pass through to one model, ``trim`` is the config's policy,
``trim-<policy>-<value>`` is ``parse_policy("<policy>:<value>")`` (``trim-thr-0.7`` -> ``thr:0.7``), and
``serve.routers`` adds names for specs that do not fit in a name (``trim-pomdp-lam0.15: pomdp:DIR``).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache

from trimroute.errors import ConfigError
from trimroute.policies import POLICIES, Policy, parse_policy
from trimroute.serve.errors import ApiError
from trimroute.serve.settings import PASS_THROUGHS

__all__ = ["Routers", "policy_from_spec"]

PREFIX = "trim-"


@lru_cache(maxsize=256)
def policy_from_spec(spec: str) -> Policy:
    """A policy per spec string, built once: policies are pure, so requests share them."""
    return parse_policy(spec)


class Routers:
    """The served model names. Configured specs are parsed at start-up, so a bad one fails there."""

    def __init__(self, default_spec: str, configured: Mapping[str, str]) -> None:
        self.specs = {**{name: name for name in PASS_THROUGHS}, "trim": default_spec, **configured}
        for name, spec in self.specs.items():
            try:
                policy_from_spec(spec)
            except ConfigError as e:
                raise ConfigError(f"router {name!r}: {e}") from None

    def names(self) -> list[str]:
        return list(self.specs)

    def spec(self, model: str) -> str:
        """The policy spec a model name stands for; 404 when it names no router."""
        if model in self.specs:
            return self.specs[model]
        if model.startswith(PREFIX):
            rest = model[len(PREFIX) :]
            # the longest registered policy name that ``rest`` starts with (names may contain '-')
            matches = [p for p in POLICIES if rest == p or rest.startswith(p + "-")]
            if matches:
                name = max(matches, key=len)
                value = rest[len(name) + 1 :]
                return f"{name}:{value}" if value else name
        raise ApiError(
            404,
            f"model {model!r} names no router; served: {', '.join(self.names())}, "
            f"or trim-<policy>-<value> with policy one of {', '.join(POLICIES)} (e.g. trim-thr-0.7)",
            code="model_not_found",
            param="model",
        )

    def resolve(self, model: str, override: str | None = None) -> Policy:
        """The policy for a request: its ``model``'s router, or the extension's ``policy`` spec."""
        spec = self.spec(model)
        try:
            return policy_from_spec(override or spec)
        except ConfigError as e:
            where = "trim.policy" if override else "model"
            raise ApiError(400, f"{where}: {e}", param=where) from None
