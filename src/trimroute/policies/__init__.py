"""Routing policies, addressed by spec strings such as ``weak``, ``thr:0.7``, ``random:0.2``, ``pomdp:PATH``.

Each registry entry is a factory taking the text after the colon (or None).
"""

from __future__ import annotations

from collections.abc import Callable

from trimroute.errors import ConfigError
from trimroute.policies.base import KEEP_FINAL, Policy, final_modifier
from trimroute.policies.baselines import RandomPolicy, StrongOnly, WeakOnly
from trimroute.policies.threshold import ThresholdPolicy
from trimroute.registry import Registry

__all__ = [
    "KEEP_FINAL",
    "POLICIES",
    "Policy",
    "RandomPolicy",
    "StrongOnly",
    "ThresholdPolicy",
    "WeakOnly",
    "final_modifier",
    "parse_policy",
]


def _number(spec: str, arg: str | None) -> float:
    if arg is None:
        raise ConfigError(f"policy {spec!r} needs a value, e.g. {spec}:0.5")
    try:
        return float(arg)
    except ValueError:
        raise ConfigError(f"policy {spec!r} takes a number, got {arg!r}") from None


def _no_arg(factory: Callable[[], Policy], spec: str) -> Callable[[str | None], Policy]:
    def make(arg: str | None) -> Policy:
        if arg is not None:
            raise ConfigError(f"policy {spec!r} takes no value, got {arg!r}")
        return factory()

    return make


def _keeping_final(spec: str, make: Callable[[float, bool], Policy]) -> Callable[[str | None], Policy]:
    """A factory for ``spec:X`` and ``spec:X:keep-final`` (never rewrite the step that ends the solution)."""

    def factory(arg: str | None) -> Policy:
        value, sep, modifier = (arg or "").partition(":")
        if sep and modifier != KEEP_FINAL:
            raise ConfigError(
                f"policy {spec!r} takes a number, optionally then :{KEEP_FINAL} "
                f"(e.g. {spec}:0.5:{KEEP_FINAL}), got {arg!r}"
            )
        return make(_number(spec, value if arg is not None else None), bool(sep))

    return factory


POLICIES: Registry[Policy] = Registry("policy")
POLICIES.register("weak", _no_arg(WeakOnly, "weak"))
POLICIES.register("strong", _no_arg(StrongOnly, "strong"))
POLICIES.register("random", _keeping_final("random", lambda p, keep: RandomPolicy(p, keep_final=keep)))
POLICIES.register("thr", _keeping_final("thr", lambda k, keep: ThresholdPolicy(k, keep_final=keep)))
POLICIES.register("pomdp", "trimroute.policies.pomdp:pomdp_policy")
POLICIES.register("agg", "trimroute.policies.agg:load_agg")  # torch + SB3 load only when asked for
POLICIES.register("seq", "trimroute.policies.seq:load_seq")


def parse_policy(spec: str) -> Policy:
    """Build a policy from its spec string (``name`` or ``name:value``)."""
    name, sep, arg = spec.strip().partition(":")
    return POLICIES.create(name, arg if sep else None)
