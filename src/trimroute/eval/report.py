"""What ``trim report`` and ``trim calibrate`` do with finished runs; no model is called.

- ``merge_runs``: the points of several run directories on the same problems, as one set of curves;
- ``calibrate``: from a calibration run, the policy point that meets a cost or quality target, with the
  accuracy and cost to expect and their bootstrap intervals (issue 3, "Calibration to a budget").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from trimroute.config import RunConfig, from_dict, load_file
from trimroute.errors import ConfigError, DataError
from trimroute.eval import metrics as m
from trimroute.eval.results import REFERENCES, PointData
from trimroute.eval.rundir import RunDir
from trimroute.policies import parse_policy

__all__ = ["Calibration", "calibrate", "load_points", "merge_runs", "write_policy_config"]


def load_points(run: RunDir) -> list[PointData]:
    if not run.exists():
        raise DataError(f"{str(run.path)!r} is not a trim eval run directory (no config.json)")
    return [PointData(p.name, p.method, run.trajectories(p)) for p in run.points]


def merge_runs(paths: Sequence[str | Path]) -> list[PointData]:
    """Points of all runs; the weak/strong references come from the first run. A point name already taken
    by an earlier run is prefixed with its run directory's name."""
    if not paths:
        raise ConfigError("give at least one run directory")
    merged: list[PointData] = []
    taken: set[str] = set()
    for k, path in enumerate(paths):
        for p in load_points(RunDir(path)):
            if k and p.method in REFERENCES:
                continue
            name = p.name if p.name not in taken else f"{Path(path).name}/{p.name}"
            method = p.method if name == p.name else f"{Path(path).name}/{p.method}"
            taken.add(name)
            merged.append(PointData(name, method, p.trajectories))
    return merged


@dataclass(frozen=True)
class Calibration:
    """The chosen point and what to expect from it on problems like the calibration set."""

    target: str
    method: str
    policy: str
    accuracy: float
    accuracy_ci: m.ConfidenceInterval
    mean_strong_tokens: float
    tokens_ci: m.ConfidenceInterval
    share: float  # of the strong-only cost
    pgr: float | None
    n_problems: int


def _deployable(points: Sequence[PointData], method: str | None) -> tuple[str, list[PointData]]:
    """The policy points of ``method`` (default: thr, else the only policy curve)."""
    curves = [p.method for p in points if p.method not in REFERENCES]
    if method is None:
        families = list(dict.fromkeys(curves))
        method = "thr" if "thr" in families else (families[0] if len(families) == 1 else None)
        if method is None:
            raise ConfigError(f"the run has several curves ({', '.join(families) or 'none'}); choose one with --method")
    members = [p for p in points if p.method == method]
    if not members:
        raise ConfigError(f"the run has no method {method!r}; it has: {', '.join(dict.fromkeys(curves))}")
    try:
        for p in members:
            parse_policy(p.name)
    except ConfigError:
        raise ConfigError(
            f"{method!r} routes whole queries, not steps: calibrate a step policy (thr, pomdp, agg, ...)"
        ) from None
    return method, members


def calibrate(
    run: RunDir,
    *,
    target_share: float | None = None,
    target_budget: float | None = None,
    target_pgr: float | None = None,
    method: str | None = None,
    n_resamples: int = 1000,
    seed: int = 0,
) -> Calibration:
    """The point of ``method`` meeting exactly one target: the most accurate point within a strong-token
    share or mean budget, or the cheapest point reaching a PGR."""
    if sum(t is not None for t in (target_share, target_budget, target_pgr)) != 1:
        raise ConfigError("give exactly one target: --target-share, --target-budget or --target-pgr")
    points = load_points(run)
    summaries = {p.name: m.summarize(p.name, p.trajectories, strong_only_tokens=None) for p in points}
    refs = {r: summaries.get(r) for r in REFERENCES}
    if refs["weak"] is None or refs["strong"] is None:
        raise DataError(f"{str(run.path)!r} lacks its weak-only or strong-only results; finish the run first")
    r_weak, r_strong, c_strong = refs["weak"].accuracy, refs["strong"].accuracy, refs["strong"].mean_strong_tokens
    if r_weak is None or r_strong is None:
        raise DataError("the references are not graded; run trim grade RUN")
    method, members = _deployable(points, method)
    graded = [(p, summaries[p.name]) for p in members if summaries[p.name].accuracy is not None]
    if target_pgr is not None:
        if not 0 < target_pgr <= 1:
            raise ConfigError(f"--target-pgr is a fraction in (0, 1], e.g. 0.8, got {target_pgr}")
        target = f"PGR >= {target_pgr:.0%}"
        # an empty performance gap (pgr None) reaches no positive target
        ok = [(p, s) for p, s in graded if (m.pgr(s.accuracy or 0.0, r_weak, r_strong) or 0.0) >= target_pgr - 1e-9]
        if not ok:
            raise DataError(f"no point of {method!r} reaches {target} (strong-only gains {r_strong - r_weak:+.1%})")
        chosen, s = min(ok, key=lambda ps: (ps[1].mean_strong_tokens, -(ps[1].accuracy or 0)))
    else:
        if target_share is not None:
            if not 0 <= target_share <= 1:
                raise ConfigError(f"--target-share is a fraction in [0, 1], e.g. 0.2, got {target_share}")
            budget, target = target_share * c_strong, f"strong-token share <= {target_share:.0%}"
        else:
            assert target_budget is not None
            if target_budget < 0:
                raise ConfigError(f"--target-budget is a mean number of strong tokens >= 0, got {target_budget}")
            budget, target = target_budget, f"mean strong tokens <= {target_budget:g}"
        ok = [(p, s) for p, s in graded if s.mean_strong_tokens <= budget + 1e-9]
        if not ok:
            cheapest = min(s.mean_strong_tokens for _, s in graded)
            raise DataError(f"no point of {method!r} meets {target}; the cheapest costs {cheapest:.1f} strong tokens")
        chosen, s = max(ok, key=lambda ps: (ps[1].accuracy or 0, -ps[1].mean_strong_tokens))
    assert s.accuracy is not None
    tokens = np.array([t.strong_tokens for t in chosen.trajectories], dtype=float)
    return Calibration(
        target=target,
        method=method,
        policy=parse_policy(chosen.name).name,
        accuracy=s.accuracy,
        accuracy_ci=m.bootstrap_accuracy(chosen.trajectories, n_resamples=n_resamples, seed=seed),
        mean_strong_tokens=s.mean_strong_tokens,
        tokens_ci=m.bootstrap_mean(tokens, n_resamples=n_resamples, seed=seed),
        share=s.mean_strong_tokens / c_strong if c_strong else 0.0,
        pgr=m.pgr(s.accuracy, r_weak, r_strong),
        n_problems=s.n,
    )


def write_policy_config(run: RunDir, policy: str, path: str | Path) -> Path:
    """Write ``policy`` into a config for ``trim run``/``trim serve``: into an existing YAML file (only its
    ``policy`` changes), or a new file holding the run's models, scorer and engine rules."""
    path = Path(path)
    if path.suffix not in (".yaml", ".yml"):
        raise ConfigError(f"--write-config writes YAML: give a .yaml file, not {str(path)!r}")
    data: dict[str, Any]
    if path.exists():
        data = load_file(path)
    else:
        data = dict(run.config().get("run_config") or {})
    data["policy"] = policy
    from_dict(RunConfig, data)  # the file must load in trim run
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path
