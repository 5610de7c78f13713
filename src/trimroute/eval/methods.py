"""Method specs of ``trim eval --methods`` and their expansion into sweep points.

A spec names a method (one curve of the report) and, for swept methods, its points:

- any policy spec accepted by ``parse_policy`` (``weak``, ``strong``, ``thr:0.7``, ``pomdp:DIR``,
  ``pomdp:preset=qwen1.5b-7b,lam=1e-3``, ...). Only the swept value takes a comma list: it expands to one
  point per value, and ``a,b,...,c`` to the arithmetic progression (``thr:0,0.1,...,1`` is 11 points,
  ``pomdp:preset=qwen1.5b-7b,lam=1e-3,5e-4`` two, ``agg:DIR1,DIR2`` two); a modifier after the list applies to
  each point (``thr:0.3,0.5:keep-final``: TRIM-Thr that never rewrites the answer step);
- ``thr:quantile=0.1,0.25``: TRIM-Thr at thresholds set to those quantiles of the scores of the weak
  steps (scored by a ``thr:0`` point, which keeps every weak step), so each escalates about that share of
  steps whatever the scorer's scale;
- ``random:matched``: random step routing at the mean strong-token budget of each ``thr`` point, p found
  by bisection (``eval.matching``) until the budgets agree within ±2 %; ``random:matched:keep-final`` the
  same, never rewriting the step that ends the solution;
- ``automix[:prod|min][:THRESHOLDS]``: AutoMix-PRM (``baselines.automix``): the product or minimum of the
  PRM's step scores of the weak solution is the verifier score, and the problem is escalated, after the weak
  solution, where P(only strong solves it | score bin) >= t;
- ``query:sw|mf|bert[:THRESHOLDS]``: RouteLLM's similarity-weighted ranking, matrix factorisation and BERT
  classifier (``baselines``): the problem goes to strong-only where the router's score >= t;
- ``oracle``: the oracle query router (upper bound of every query-level router).

AutoMix and the query routers are trained on the weak-only and strong-only results of a separate training
run (``trim eval --train RUN``), or cross-fitted on the evaluated problems without one. Without thresholds,
they are swept over the quantiles of their own scores.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from trimroute.errors import ConfigError
from trimroute.policies import KEEP_FINAL, final_modifier, parse_policy

__all__ = [
    "AutoMix",
    "MatchedRandom",
    "Method",
    "Oracle",
    "PolicyPoints",
    "QuantileThresholds",
    "QueryRouter",
    "parse_methods",
]

AUTOMIX_AGGREGATES = ("prod", "min")
QUERY_ROUTERS = ("sw", "mf", "bert")  # baselines.BASELINES without automix


@dataclass(frozen=True)
class PolicyPoints:
    """Points run by the engine, one policy spec each."""

    family: str
    specs: tuple[str, ...]


@dataclass(frozen=True)
class QuantileThresholds:
    """TRIM-Thr at quantiles of the weak steps' scores (points of the ``thr`` curve, ``thr:0`` first)."""

    quantiles: tuple[float, ...]
    family: str = "thr"

    @property
    def spec(self) -> str:
        return "thr:quantile=" + ",".join(f"{q:g}" for q in self.quantiles)


@dataclass(frozen=True)
class MatchedRandom:
    """Random routing at the mean strong tokens of each ``thr`` point, within ±2 % (DESIGN.md §5); with
    ``keep_final`` (``random:matched:keep-final``) never rewriting the step that ends the solution."""

    keep_final: bool = False

    @property
    def family(self) -> str:
        return f"random:matched{final_modifier(self.keep_final)}"


@dataclass(frozen=True)
class AutoMix:
    """AutoMix-PRM: escalate the whole problem, after its weak solution, where P(only strong solves it | the
    bin of the weak solution's aggregated step score) >= t."""

    aggregate: str
    thresholds: tuple[float, ...] | None

    @property
    def family(self) -> str:
        return f"automix:{self.aggregate}"


@dataclass(frozen=True)
class QueryRouter:
    """A RouteLLM router on the problem text (``sw``, ``mf``, ``bert``); strong-only where its score >= t."""

    kind: str
    thresholds: tuple[float, ...] | None

    @property
    def family(self) -> str:
        return f"query:{self.kind}"


@dataclass(frozen=True)
class Oracle:
    """Weak when it is right, strong when only strong is right (upper bound of query-level routing)."""

    family: str = "oracle"


Method = PolicyPoints | QuantileThresholds | MatchedRandom | AutoMix | QueryRouter | Oracle


def parse_values(spec: str, text: str) -> tuple[float, ...]:
    """``0.1,0.5`` or the progression ``0,0.1,...,1`` as numbers."""
    items = [s.strip() for s in text.split(",")]
    progression = "..." in items
    if progression and (len(items) != 4 or items[2] != "..."):
        raise ConfigError(f"{spec!r}: write a progression as first,second,...,last (e.g. 0,0.1,...,1)")
    try:
        values = [float(s) for s in items if s != "..."]
    except ValueError:
        raise ConfigError(f"{spec!r}: values must be numbers separated by commas") from None
    if not progression:
        return tuple(values)
    first, second, last = values
    step = second - first
    if step <= 0 or last < first:
        raise ConfigError(f"{spec!r}: a progression must increase (first < second <= last)")
    n = math.floor((last - first) / step + 1e-9)
    # round away float noise so that 0.30000000000000004 names the same point as 0.3
    return tuple(round(first + i * step, 10) for i in range(n + 1))


def _thresholds(spec: str, text: str | None) -> tuple[float, ...] | None:
    return None if text is None else parse_values(spec, text)


def _swept_args(spec: str, arg: str) -> list[str]:
    """The policy arguments a spec sweeps over: one per value of its one comma-separated list.

    ``0.1,0.5`` and ``0,0.1,...,1`` are value lists; ``DIR1,DIR2`` lists solved policy folders; in
    ``key=value`` form (``preset=P,lam=1e-3,5e-4``) a part without ``=`` continues the previous key's
    values, and only one key may have more than one.
    """
    parts = [s.strip() for s in arg.split(",")]
    if len(parts) == 1 or all(Path(s).is_dir() for s in parts):
        return parts
    if "=" not in parts[0]:
        return [f"{v:g}" for v in parse_values(spec, arg)]
    keyed: list[tuple[str, list[str]]] = []
    for part in parts:
        key, sep, value = part.partition("=")
        if sep:
            keyed.append((key.strip(), [value.strip()]))
        else:
            keyed[-1][1].append(part)
    swept = [k for k, values in keyed if len(values) > 1]
    if len(swept) > 1:
        raise ConfigError(f"{spec!r}: only one value can be swept (a comma list), here {' and '.join(swept)}")
    if not swept:
        return [arg]
    values = dict(keyed)[swept[0]]
    points = [f"{v:g}" for v in parse_values(spec, ",".join(values))]
    return [",".join(f"{k}={p if k == swept[0] else vs[0]}" for k, vs in keyed) for p in points]


def _policy_points(spec: str) -> PolicyPoints:
    name, sep, arg = spec.partition(":")
    arg, colon, modifier = arg.partition(":")  # a modifier applies to every point: thr:0.3,0.5:keep-final
    specs = tuple(f"{name}:{a}{colon}{modifier}" for a in _swept_args(spec, arg)) if sep else (spec,)
    for s in specs:
        parse_policy(s)  # reject a bad spec before any model call
    return PolicyPoints(family=name, specs=specs)


def parse_method(spec: str) -> Method:
    spec = spec.strip()
    name, _, rest = spec.partition(":")
    args = rest.split(":", 1) if rest else []
    if name == "oracle":
        if rest:
            raise ConfigError(f"method 'oracle' takes no value, got {spec!r}")
        return Oracle()
    if spec in ("random:matched", f"random:matched:{KEEP_FINAL}"):
        return MatchedRandom(keep_final=spec.endswith(KEEP_FINAL))
    if rest.startswith("quantile="):
        if name != "thr":
            raise ConfigError(f"{spec!r}: quantile thresholds are for thr, e.g. thr:quantile=0.1,0.25")
        quantiles = parse_values(spec, rest.removeprefix("quantile="))
        if not quantiles or not all(0.0 < q < 1.0 for q in quantiles):
            raise ConfigError(f"{spec!r}: quantiles must lie in (0, 1), e.g. thr:quantile=0.1,0.25")
        return QuantileThresholds(quantiles)
    if name == "automix":
        aggregate = args[0] if args else "prod"
        if aggregate not in AUTOMIX_AGGREGATES:
            raise ConfigError(f"{spec!r}: AutoMix aggregates step scores by prod or min, e.g. automix:min:0.2,0.5")
        return AutoMix(aggregate, _thresholds(spec, args[1] if len(args) > 1 else None))
    if name == "query":
        if not args or args[0] not in QUERY_ROUTERS:
            raise ConfigError(f"{spec!r}: query routers are {', '.join(f'query:{k}' for k in QUERY_ROUTERS)}")
        return QueryRouter(args[0], _thresholds(spec, args[1] if len(args) > 1 else None))
    return _policy_points(spec)


def parse_methods(specs: Sequence[str]) -> list[Method]:
    """Parse ``specs`` (each may hold several, separated by spaces); weak and strong are always included,
    first, because every metric is relative to them."""
    methods: list[Method] = [PolicyPoints("weak", ("weak",)), PolicyPoints("strong", ("strong",))]
    for spec in (s for text in specs for s in text.split()):
        method = parse_method(spec)
        if method not in methods:
            methods.append(method)
    if any(isinstance(m, MatchedRandom) for m in methods) and not any(
        isinstance(m, PolicyPoints | QuantileThresholds) and m.family == "thr" for m in methods
    ):
        raise ConfigError("random:matched matches the budgets of thr points: add e.g. thr:0,0.1,...,1 to --methods")
    return methods
