"""compute_metrics: the oracle as a curve (its cheapest-first band's upper edge); budgets that match."""

from __future__ import annotations

import pytest

from trimroute.eval.results import PointData, compute_metrics, render_markdown
from trimroute.types import Problem, RoleUsage, StopReason, Trajectory, Usage

STRONG_TOKENS = {"p0": 10, "p1": 30, "p2": 20, "p3": 40}


def _trajectory(pid: str, role: str, correct: bool, tokens: int | None = None) -> Trajectory:
    tokens = tokens if tokens is not None else STRONG_TOKENS[pid] if role == "strong" else 0
    return Trajectory(
        problem=Problem(pid, "q", "1"),
        steps=(),
        discarded=(),
        stop_reason=StopReason.ANSWER,
        usage=Usage(strong=RoleUsage(calls=1, generated_tokens=tokens)) if tokens else Usage(),
        policy=role,
        correct=correct,
    )


def test_oracle_is_the_cheapest_first_curve() -> None:
    # weak solves p0; strong solves p0, p1, p2: the oracle fixes p2 (20 tokens), then p1 (30).
    weak = [_trajectory(p, "weak", p == "p0") for p in STRONG_TOKENS]
    strong = [_trajectory(p, "strong", p != "p3") for p in STRONG_TOKENS]
    oracle = [_trajectory(p, "oracle", p != "p3") for p in STRONG_TOKENS]  # its one all-fixes point
    points = [
        PointData("weak", "weak", weak),
        PointData("strong", "strong", strong),
        PointData("oracle", "oracle", oracle),
    ]
    results = compute_metrics(points, n_resamples=50)
    assert results["oracle_band"] == [[0.0, 0.25], [5.0, 0.5], [12.5, 0.75]]
    curve = results["curves"]["oracle"]
    # r_weak 0.25, r_strong 0.75, C̄ strong-only 25: PGR 0.5 at 5 tokens, 0.95 on the way to 12.5.
    assert curve["cpt"]["50%"]["tokens"] == pytest.approx(5.0)
    assert curve["cpt"]["95%"]["tokens"] == pytest.approx(5.0 + 7.5 * 0.225 / 0.25)
    assert curve["cpt"]["95%"]["share"] == pytest.approx((5.0 + 7.5 * 0.225 / 0.25) / 25)
    base, deltas = 0.5 / 25, []
    for b in range(100):
        gain = 0.5 * (b + 0.5) / 100
        cost = 20 * gain if gain <= 0.25 else 5 + 30 * (gain - 0.25)
        deltas.append((gain / cost - base) / base)
    assert curve["delta_ibc"] == pytest.approx(sum(deltas) / 100)
    # Mean accuracy over shares: trapezoids on (0, .25), (5, .5), (12.5, .75), then flat to 25.
    area = 5 * 0.375 + 7.5 * 0.625 + 12.5 * 0.75
    assert curve["apgr"] == pytest.approx((area / 25 - 0.25) / 0.5)
    assert curve["reach"] == pytest.approx(1.0)
    low, _ = curve["delta_ibc_ci"]  # 4 problems: some resamples have no gap, so no upper bound
    assert low is not None and low <= curve["delta_ibc"]


def test_budget_matches_pair_each_thr_point_with_the_nearest_random_point() -> None:
    weak = [_trajectory(p, "weak", p == "p0") for p in STRONG_TOKENS]
    strong = [_trajectory(p, "strong", p != "p3") for p in STRONG_TOKENS]
    thr = [_trajectory(p, "thr", p in ("p0", "p1"), tokens=10) for p in STRONG_TOKENS]  # C̄ 10
    near = [_trajectory(p, "random", p == "p0", tokens=10 if p != "p3" else 11) for p in STRONG_TOKENS]  # 10.25
    far = [_trajectory(p, "random", p != "p3", tokens=12) for p in STRONG_TOKENS]  # C̄ 12
    points = [
        PointData("weak", "weak", weak),
        PointData("strong", "strong", strong),
        PointData("thr:0.5", "thr", thr),
        PointData("random:0.3", "random:matched", far),
        PointData("random:0.2", "random:matched", near),
    ]
    results = compute_metrics(points, n_resamples=50)
    (match,) = results["budget_matches"]
    assert (match["thr"], match["random"], match["target"], match["achieved"]) == ("thr:0.5", "random:0.2", 10, 10.25)
    assert match["relative_error"] == pytest.approx(0.025) and match["same_budget"] is False  # 2.5 % > 2 %
    assert match["accuracy_difference"] == pytest.approx(0.25)  # thr solves p1 too
    assert "| `thr:0.5` | 10.0 | `random:0.2` | 10.2 (+2.5%) | NO | +25.0 pt" in render_markdown(results)


def test_delta_ibc_ratio_over_the_best_query_level_baseline() -> None:
    weak = [_trajectory(p, "weak", p == "p0") for p in STRONG_TOKENS]
    strong = [_trajectory(p, "strong", p != "p3") for p in STRONG_TOKENS]
    thr = [_trajectory(p, "thr", p != "p3", tokens=5) for p in STRONG_TOKENS]  # strong's accuracy at C̄ 5
    good = [_trajectory(p, "query", p in ("p0", "p1"), tokens=5) for p in STRONG_TOKENS]  # PGR 0.5 at C̄ 5
    poor = [_trajectory(p, "automix", p in ("p0", "p1"), tokens=10) for p in STRONG_TOKENS]  # PGR 0.5 at 10
    points = [
        PointData("weak", "weak", weak),
        PointData("strong", "strong", strong),
        PointData("thr:0.5", "thr", thr),
        PointData("query:sw:0.5", "query:sw", good),
        PointData("automix:prod:0.5", "automix:prod", poor),
        PointData("oracle", "oracle", strong),
    ]
    results = compute_metrics(points, n_resamples=50)
    versus = results["versus_baseline"]
    assert versus["baseline"] == "query:sw" and versus["delta_ibc"] == results["curves"]["query:sw"]["delta_ibc"]
    assert list(versus["ratios"]) == ["thr"]  # neither a baseline nor the oracle is compared
    ratio = results["curves"]["thr"]["delta_ibc"] / results["curves"]["query:sw"]["delta_ibc"]
    assert versus["ratios"]["thr"]["ratio"] == pytest.approx(ratio)
    assert f"ΔIBC over the best query-level baseline (query:sw, ΔIBC {versus['delta_ibc']:.2f})" in render_markdown(
        results
    )
