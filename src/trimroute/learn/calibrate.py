"""Fitting the simulator to a measured TRIM-Thr curve (accuracy and strong tokens at each threshold k).

``thr_curve`` is the simulator's *expected* TRIM-Thr curve, computed exactly by a forward recursion over
the step index instead of by sampling: the distribution over (problem difficulty, prefix state S0/S1,
bin of the running min score) is pushed through one step at a time with the rules of ``sim/backend.py``
(weak proposal, score, regenerate iff score < k, strong rewrite, re-score, termination). It is the fit's
objective, not a routing loop that runs anything: the engine-driven simulator must agree with it, which
``tests/unit/learn/test_calibrate.py`` checks by Monte Carlo.

``fit_to_curve`` fits the free parameters to the measured points by weighted least squares (binomial
standard errors for accuracies, 5 % for strong tokens and calls): the next-step accuracies of the median problem,
the spread of the per-problem difficulty shared by both models, the scorer's logit shift per hidden state
on the weak model's own steps (the measured PRM flags more steps than its ProcessBench table predicts),
the strong model's mean tokens per correct step, the length factor of wrong steps and the recovery
probability. ``bench/fit_simulator.py`` is the one command that writes the shipped fitted preset.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from numpy.polynomial.hermite_e import hermegauss
from scipy import optimize, special

from trimroute.errors import DataError
from trimroute.sim.presets import DIFFICULTY_NODES, N_BINS, ObservationModel, SimParams, one_role_run

__all__ = ["CurvePoint", "fit_to_curve", "thr_curve", "warped_observation"]

_MIN = np.minimum.outer(np.arange(N_BINS), np.arange(N_BINS)).ravel()  # running-min bin after (m, c)
_SCATTER = np.eye(N_BINS)[_MIN]  # (m·c, m'): one-hot of the new running-min bin


@dataclass(frozen=True)
class CurvePoint:
    """One point of a TRIM-Thr curve: k (0 = weak only, 1 = strong only), accuracy, and per problem: strong
    tokens, strong calls (regenerations) and accepted weak tokens."""

    k: float
    accuracy: float
    strong_tokens: float
    strong_calls: float = 0.0
    weak_tokens: float = 0.0


def _below(k: float) -> np.ndarray:
    """Fraction of each score bin below k (scores are uniform within a bin)."""
    return np.clip(k * N_BINS - np.arange(N_BINS), 0.0, 1.0)


def _one_role(params: SimParams, role: str, z: np.ndarray, w: np.ndarray) -> CurvePoint:
    """Weak-only (k = 0) or strong-only (k = 1): one model writes every step."""
    acc, units, steps = one_role_run(params, role, z, w)
    if role == "weak":
        return CurvePoint(0.0, acc, 0.0, 0.0, units * params.weak.mean_tokens)
    return CurvePoint(1.0, acc, units * params.strong.mean_tokens, steps)


def _mixed(params: SimParams, k: float, z: np.ndarray, w: np.ndarray) -> CurvePoint:
    cond = params.observation.conditional  # [s, m, c]
    pw, ps = params.accuracy_at(z, "weak")[:, None], params.accuracy_at(z, "strong")[:, None]
    hw, hs = params.hazard, params.strong_hazard
    below = _below(k)
    reg_p = cond @ below  # [s, m]: P(regenerate | m, s)
    keep = cond * (1.0 - below)  # [s, m, c]: P(c, continue | m, s)
    mean_s, mean_w = params.strong.mean_tokens, params.weak.mean_tokens
    f, r = params.wrong_token_factor, params.recovery
    n = len(z)
    ok = np.zeros((n, N_BINS))  # mass alive with an all-correct prefix, by running-min bin
    ok[:, -1] = 1.0
    bad = np.zeros((n, N_BINS))  # mass alive after an error
    acc, tokens, calls, weak_tokens = np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n)

    def rescored(mass: np.ndarray, state: int) -> np.ndarray:
        """Mass by new running-min bin after a step of ``state`` is scored from running-min bins ``mass``."""
        return (mass[:, :, None] * cond[state][None]).reshape(n, -1) @ _SCATTER

    def kept(mass: np.ndarray, state: int) -> np.ndarray:
        return (mass[:, :, None] * keep[state][None]).reshape(n, -1) @ _SCATTER

    for t in range(params.max_steps):
        end_c, end_r, end_rs = hw[t], max(hw[t], hs[t]), hs[t]
        # proposals: S0 and S2 from a correct prefix, S1 after an error
        p0, p2, p1 = ok * pw, ok * (1 - pw), bad
        # continued proposals
        c0, c2, c1 = kept(p0, 0), kept(p2, 2), kept(p1, 1)
        acc += end_c * c0.sum(axis=1)
        weak_tokens += mean_w * (c0.sum(axis=1) + f * (c2.sum(axis=1) + c1.sum(axis=1)))
        # regenerated proposals: the strong step from a correct prefix, or after an error
        from_ok = p0 * reg_p[0] + p2 * reg_p[2]
        from_bad = p1 * reg_p[1]
        s_ok, s_wrong = from_ok * ps, from_ok * (1 - ps)
        s_rec, s_bad = from_bad * r, from_bad * (1 - r)
        n_calls = from_ok.sum(axis=1) + from_bad.sum(axis=1)
        calls += n_calls
        tokens += mean_s * (s_ok.sum(axis=1) + s_rec.sum(axis=1) + f * (s_wrong.sum(axis=1) + s_bad.sum(axis=1)))
        acc += end_rs * (s_ok.sum(axis=1) + s_rec.sum(axis=1))
        ok = (1 - end_c) * c0 + (1 - end_r) * (rescored(s_ok, 0) + rescored(s_rec, 0))
        bad = (1 - end_c) * (c2 + c1) + (1 - end_r) * (rescored(s_wrong, 2) + rescored(s_bad, 1))
    return CurvePoint(k, float(w @ acc), float(w @ tokens), float(w @ calls), float(w @ weak_tokens))


def thr_curve(params: SimParams, ks: Sequence[float]) -> list[CurvePoint]:
    """The simulator's expected TRIM-Thr points; k = 0 is weak only, k = 1 strong only (the official runs)."""
    z, w = hermegauss(DIFFICULTY_NODES)
    w = w / w.sum()
    roles = {0.0: "weak", 1.0: "strong"}
    return [_one_role(params, roles[k], z, w) if k in roles else _mixed(params, k, z, w) for k in ks]


def warped_observation(
    obs: ObservationModel, shifts: Sequence[float], scales: Sequence[float], name: str
) -> ObservationModel:
    """P(o | s) with each state's current score c mapped to expit(shifts[s] + scales[s]·logit(c)), re-binned.

    The running-min marginal P(m | s) is kept; only P(c | m, s) changes, which is what the simulator draws.
    """
    sub = (np.arange(N_BINS)[:, None] + (np.arange(64)[None, :] + 0.5) / 64) / N_BINS  # points inside each bin
    probs = np.zeros_like(obs.probs)
    cond = obs.conditional
    for s, (shift, scale) in enumerate(zip(shifts, scales, strict=True)):
        moved = special.expit(shift + scale * special.logit(sub))
        bins = np.minimum((moved * N_BINS).astype(int), N_BINS - 1)
        warp = np.stack([np.bincount(b, minlength=N_BINS) / b.size for b in bins])  # [c_in, c_out]
        probs[s] = obs.probs[s].sum(axis=1, keepdims=True) * (cond[s] @ warp)
    return ObservationModel(name=name, probs=probs / probs.sum(axis=(1, 2), keepdims=True), scorer=obs.scorer)


_FREE = ("difficulty_sd", "shift_S0", "shift_S1", "shift_S2", "scale_S0", "scale_S1", "scale_S2",
         "wrong_token_factor", "recovery")  # fmt: skip


def _anchored(base: SimParams, x: np.ndarray, weak_only: CurvePoint, strong_only: CurvePoint, name: str) -> SimParams:
    """``base`` with the free parameters ``x``; the median problem's next-step accuracies and both models'
    tokens per step are then solved so that weak-only and strong-only match their measurements."""
    sd, sh0, sh1, sh2, sc0, sc1, sc2, f, r = (float(v) for v in x)
    name_obs = f"{base.observation.name}+warp"
    observation = warped_observation(base.observation, (sh0, sh1, sh2), (sc0, sc1, sc2), name_obs)
    params = replace(
        base,
        name=name,
        observation=observation,
        difficulty_sd=sd,
        wrong_token_factor=f,
        recovery=r,
    )
    z, w = hermegauss(DIFFICULTY_NODES)
    w = w / w.sum()

    def with_p(role: str, logit: float) -> SimParams:
        stats = getattr(params, role)
        return replace(params, **{role: replace(stats, next_step_accuracy=float(special.expit(logit)))})

    for role, target in (("weak", weak_only), ("strong", strong_only)):
        gap = lambda logit, role=role, target=target: (  # noqa: E731
            _one_role(with_p(role, logit), role, z, w).accuracy - target.accuracy
        )
        params = with_p(role, optimize.brentq(gap, -5.0, 20.0))
    weak, strong = _one_role(params, "weak", z, w), _one_role(params, "strong", z, w)
    shift_w = math.log(weak_only.weak_tokens / weak.weak_tokens)
    shift_s = math.log(strong_only.strong_tokens / strong.strong_tokens)
    return replace(
        params,
        weak=replace(params.weak, token_log_mean=params.weak.token_log_mean + shift_w),
        strong=replace(params.strong, token_log_mean=params.strong.token_log_mean + shift_s),
    )


def fit_to_curve(
    base: SimParams, measured: Sequence[CurvePoint], n_problems: int, name: str
) -> tuple[SimParams, dict[str, float]]:
    """Fit ``base``'s free parameters to measured TRIM-Thr points (k = 0 and k = 1 among them).

    Weak-only and strong-only are matched exactly (they fix both models' accuracies and the strong tokens
    per step); the other points' accuracy residuals are scaled by their binomial standard error on
    ``n_problems``; strong-token and strong-call residuals are relative, scaled by 5 % (calls only when
    every point has them).
    """
    by_k = {round(p.k, 6): p for p in measured}
    if 0.0 not in by_k or 1.0 not in by_k or len(measured) < len(_FREE) + 2:
        raise DataError(f"need weak-only (k=0), strong-only (k=1) and {len(_FREE)} more threshold points")
    inner = [p for p in measured if 0.0 < p.k < 1.0]
    ks = [p.k for p in inner]
    acc = np.array([p.accuracy for p in inner])
    se = np.sqrt(acc * (1 - acc) / n_problems)
    tok = np.array([p.strong_tokens for p in inner])
    calls = np.array([p.strong_calls for p in inner])

    def residuals(x: np.ndarray) -> np.ndarray:
        curve = thr_curve(_anchored(base, x, by_k[0.0], by_k[1.0], name), ks)
        ra = (np.array([c.accuracy for c in curve]) - acc) / se
        rt = np.log(np.array([c.strong_tokens for c in curve]) / tok) / 0.05
        rc = np.log(np.array([c.strong_calls for c in curve]) / calls) / 0.05
        return np.concatenate([ra, rt, rc if calls.all() else []])

    lo = np.array([0.0, -4.0, -4.0, -4.0, 0.3, 0.3, 0.3, 0.5, 0.0])
    hi = np.array([4.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0, 3.0, 0.5])
    best = None
    for x0 in ([0.5, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 0.0], [1.5, -1.0, -1.0, 0.0, 2.0, 1.0, 1.0, 1.5, 0.05]):
        res = optimize.least_squares(residuals, np.array(x0), bounds=(lo, hi), diff_step=1e-3)
        if best is None or res.cost < best.cost:
            best = res
    assert best is not None
    fitted = dict(zip(_FREE, (float(v) for v in best.x), strict=True))
    fitted["weighted_sse"] = 2 * float(best.cost)
    return _anchored(base, best.x, by_k[0.0], by_k[1.0], name), fitted
