from __future__ import annotations

from collections.abc import Sequence

import pytest

from trimroute.errors import ConfigError, DataError
from trimroute.eval.metrics import (
    Point,
    Price,
    References,
    apgr,
    auc,
    bootstrap_accuracy,
    bootstrap_curve,
    bootstrap_ratio,
    budgeted_accuracy,
    cpt,
    delta_ibc,
    frontier,
    pgr,
    reach,
    summarize,
    upper_envelope,
)
from trimroute.types import Action, Problem, Role, RoleUsage, Step, StopReason, Trajectory, Usage

R_WEAK, R_STRONG, C_STRONG = 0.4, 0.8, 400.0
REFS = References(R_WEAK, R_STRONG, C_STRONG)


def test_upper_envelope_drops_dominated_points() -> None:
    points = [(10, 0.5), (5, 0.6), (20, 0.55), (30, 0.7), (30, 0.65), (0, 0.4)]
    assert upper_envelope(points) == [(0, 0.4), (5, 0.6), (30, 0.7)]
    with pytest.raises(DataError, match="invalid"):
        upper_envelope([(-1.0, 0.5)])


def test_frontier_is_the_concave_hull_with_weak_and_strong() -> None:
    # (100, 0.5) lies below the chord from (0, 0.4) to (200, 0.7); (300, 0.72) below the chord to strong.
    points = [(100, 0.5), (200, 0.7), (300, 0.72), (500, 0.6)]
    assert frontier(points, REFS) == [(0, 0.4), (200, 0.7), (400, 0.8)]
    # A point beyond strong-only's accuracy extends the frontier; nothing after the most accurate point.
    assert frontier([(600, 0.9), (700, 0.85)], REFS) == [(0, 0.4), (400, 0.8), (600, 0.9)]
    assert frontier([], REFS) == [(0, 0.4), (400, 0.8)]
    with pytest.raises(DataError, match="strong-only cost must be positive"):
        References(R_WEAK, R_STRONG, 0)


def test_pgr() -> None:
    assert pgr(0.6, R_WEAK, R_STRONG) == pytest.approx(0.5)
    assert pgr(0.3, R_WEAK, R_STRONG) == pytest.approx(-0.25)
    assert pgr(0.6, 0.5, 0.5) is None  # weak == strong: no gap to recover


def test_reach_is_the_best_own_point() -> None:
    assert reach([(100, 0.6), (300, 0.7), (200, 0.5)], REFS) == pytest.approx(0.75)
    assert reach([], REFS) is None
    assert reach([(100, 0.6)], References(0.6, 0.6, C_STRONG)) is None


def test_cpt_interpolates_along_the_curve_from_the_weak_point() -> None:
    points = [(100, 0.6), (200, 0.72), (300, 0.8)]
    assert cpt(points, REFS, 0.5) == pytest.approx(100)  # target 0.6: a measured point
    assert cpt(points, REFS, 0.8) == pytest.approx(200)  # target 0.72
    assert cpt(points, REFS, 0.95) == pytest.approx(275)  # 0.78: 3/4 of the way from 200 to 300
    assert cpt(points, REFS, 0.25) == pytest.approx(50)  # 0.5: half way from (0, 0.4)
    assert cpt(points, REFS, 1.0) == pytest.approx(300)


def test_cpt_past_the_curve_mixes_in_strong_only() -> None:
    # The curve stops at 0.7 at cost 500, but (100, 0.6) mixed with strong-only (400, 0.8) reaches 0.78 at 370.
    assert cpt([(100, 0.6), (500, 0.7)], REFS, 0.95) == pytest.approx(370)
    assert cpt([], REFS, 0.5) == pytest.approx(200)  # weak/strong mixture: half the strong-only cost


def test_cpt_on_a_non_monotone_curve_uses_the_envelope() -> None:
    # (150, 0.6) is dominated by the cheaper (100, 0.7): the curve is read along 0 -> 100 -> 200.
    assert cpt([(100, 0.7), (150, 0.6), (200, 0.8)], REFS, 0.95) == pytest.approx(180)


def test_cpt_when_a_free_point_already_beats_the_target() -> None:
    assert cpt([(0, 0.5), (100, 0.8)], REFS, 0.25) == 0


def test_cpt_when_weak_equals_or_beats_strong_is_none() -> None:
    assert cpt([(100, 0.6)], References(0.6, 0.6, C_STRONG), 0.5) is None
    assert cpt([(100, 0.6)], References(0.7, 0.6, C_STRONG), 0.5) is None


def test_cpt_rejects_percentages() -> None:
    with pytest.raises(ConfigError, match="fraction in \\(0, 1\\], e.g. 0.95"):
        cpt([(100, 0.6)], REFS, 95)


def test_budgeted_accuracy() -> None:
    points = [(100, 0.6), (200, 0.72), (150, 0.5)]
    assert budgeted_accuracy(points, REFS, 50) == pytest.approx(0.5)
    assert budgeted_accuracy(points, REFS, 150) == pytest.approx(0.66)
    assert budgeted_accuracy(points, REFS, 300) == pytest.approx(0.76)  # towards strong-only (400, 0.8)
    assert budgeted_accuracy(points, REFS, 1000) == pytest.approx(0.8)  # flat past the last vertex


def test_delta_ibc_of_a_straight_line_is_its_slope_ratio() -> None:
    # From (0, 0.4) to (200, 0.8): IBC = 0.002 everywhere, IBC_base = 0.4 / 400 = 0.001 -> ΔIBC = 1.
    assert delta_ibc([(200, 0.8)], REFS) == pytest.approx(1.0)
    # strong-only itself recovers the gap at the base rate: ΔIBC = 0.
    assert delta_ibc([(C_STRONG, R_STRONG)], REFS) == pytest.approx(0.0)
    assert delta_ibc([], REFS) == pytest.approx(0.0)


def test_delta_ibc_of_a_concave_curve_averages_over_the_bins() -> None:
    # 0 -> (100, 0.7): IBC 0.003 (ΔIBC 2) in the 75 bins below 0.7; then towards (400, 0.8).
    expected = 75 * 2.0
    for b in range(75, 100):
        r_b = 0.4 + 0.4 * (b + 0.5) / 100
        expected += (r_b - 0.4) / (100 + 3000 * (r_b - 0.7)) / 0.001 - 1
    assert delta_ibc([(100, 0.7), (400, 0.8)], REFS) == pytest.approx(expected / 100)
    assert delta_ibc([(100, 0.7)], REFS) == pytest.approx(expected / 100)  # strong-only completes the curve


def test_delta_ibc_of_a_curve_that_stops_early_counts_every_bin() -> None:
    # The example: twice the strong-only slope up to PGR 0.5. Old definition: 1.00 over the 50
    # bins reached. On the frontier, bins past 0.6 mix (100, 0.6) with strong-only: cost 100 + 1500 (r - 0.6).
    expected = 50 * 1.0
    for b in range(50, 100):
        r_b = 0.4 + 0.4 * (b + 0.5) / 100
        expected += (r_b - 0.4) / (100 + 1500 * (r_b - 0.6)) / 0.001 - 1
    assert delta_ibc([(100, 0.6)], REFS) == pytest.approx(expected / 100)
    continued = delta_ibc([(100, 0.6), (200, 0.8)], REFS)
    assert continued is not None and expected / 100 < continued == pytest.approx(1.0)
    assert delta_ibc([(100, 0.6)], References(0.6, 0.6, C_STRONG)) is None


def test_delta_ibc_leaves_out_bins_reached_for_free() -> None:
    # (0, 0.6) is free: the 50 lower bins have infinite IBC; the rest mix it with strong-only.
    expected = [(0.4 * (b + 0.5) / 100) / (2000 * (0.4 * (b + 0.5) / 100 - 0.2)) / 0.001 - 1 for b in range(50, 100)]
    assert delta_ibc([(0, 0.6)], REFS) == pytest.approx(sum(expected) / 50)
    assert delta_ibc([(0, 0.8)], REFS) is None


@pytest.mark.parametrize(
    ("ours", "baseline", "ratio"),
    [
        (5.67, 0.95, 5.97),  # TRIM-Agg vs AutoMix-PRM on MATH-500 (DESIGN.md §7)
        (4.75, 0.95, 5.00),  # TRIM-Thr vs AutoMix-PRM: the paper's "5x"
        (5.00, 0.79, 6.33),  # TRIM-POMDP vs SW ranking on AIME
    ],
)
def test_paper_style_delta_ibc_ratio(ours: float, baseline: float, ratio: float) -> None:
    """A curve reaching r_strong at C_strong / (1 + Δ) in a straight line has ΔIBC = Δ in every bin."""
    refs = References(0.42, 0.78, 462.4)  # MATH-500 strong-only tokens per problem

    def curve(delta: float) -> list[tuple[float, float]]:
        return [(refs.c_strong / (1 + delta), refs.r_strong)]

    ours_dibc = delta_ibc(curve(ours), refs)
    base_dibc = delta_ibc(curve(baseline), refs)
    assert ours_dibc is not None and base_dibc is not None
    assert ours_dibc == pytest.approx(ours) and base_dibc == pytest.approx(baseline)
    assert round(ours_dibc / base_dibc, 2) == ratio


def test_apgr_and_auc() -> None:
    # PGR rises linearly to 1 over the first half of the shares, then stays: 0.25 + 0.5.
    assert apgr([(200, 0.8)], REFS) == pytest.approx(0.75)
    assert auc([(200, 0.8)], REFS) == pytest.approx(0.4 + 0.4 * 0.75)
    # A point past the strong-only cost is beaten by strong-only itself: the weak/strong line, APGR 0.5.
    assert apgr([(800, 0.8)], REFS) == pytest.approx(0.5)
    assert apgr([], REFS) == pytest.approx(0.5)
    assert apgr([(200, 0.8)], References(0.5, 0.5, C_STRONG)) is None


def _trajectory(pid: str, correct: bool | None, strong: int = 0, **extra: int) -> Trajectory:
    usage = Usage(
        weak=RoleUsage(calls=3, prompt_tokens=300, generated_tokens=60, discarded_tokens=extra.get("discarded", 0)),
        strong=RoleUsage(calls=1 if strong else 0, prompt_tokens=100 if strong else 0, generated_tokens=strong),
        scorer=RoleUsage(calls=2, prompt_tokens=50, generated_tokens=0),
    )
    steps = (Step("a", "weak", 20), Step("b", "strong", strong, action=Action.REGENERATE)) if strong else ()
    return Trajectory(
        problem=Problem(pid, "q", "1"),
        steps=steps,
        discarded=(),
        stop_reason=StopReason.ANSWER,
        usage=usage,
        policy="thr:0.5",
        correct=correct,
        wall_time_s=2.0,
    )


def test_summarize() -> None:
    runs = [_trajectory("a", True, strong=40, discarded=10), _trajectory("b", False), _trajectory("c", None)]
    prices: dict[Role, Price] = {"weak": Price(0.1, 0.2), "strong": Price(3.0, 15.0)}
    s = summarize("thr:0.5", runs, strong_only_tokens=80.0, prices=prices)
    assert (s.n, s.n_graded, s.accuracy) == (3, 2, 0.5)
    assert s.mean_strong_tokens == pytest.approx(40 / 3)
    assert s.strong_share == pytest.approx(40 / 3 / 80)
    assert s.mean_strong_prompt_tokens == pytest.approx(100 / 3)
    assert (s.mean_weak_tokens, s.mean_discarded_tokens) == (60, pytest.approx(10 / 3))
    assert (s.mean_scorer_calls, s.mean_scorer_tokens) == (2, 50)
    assert s.escalations_per_problem == pytest.approx(1 / 3)
    assert s.wall_time_s == 6.0
    # weak: 3 x (300 in, 60 out); strong: 100 in, 40 out; the scorer has no price.
    assert s.cost_usd == pytest.approx((900 * 0.1 + 180 * 0.2 + 100 * 3.0 + 40 * 15.0) / 1e6)
    assert s.point == (pytest.approx(40 / 3), 0.5)
    bare = summarize("weak", [_trajectory("a", None)], strong_only_tokens=None)
    assert (bare.accuracy, bare.strong_share, bare.cost_usd) == (None, None, None)
    with pytest.raises(DataError, match="no graded trajectory"):
        _ = bare.point
    with pytest.raises(DataError, match="no trajectories"):
        summarize("weak", [], strong_only_tokens=None)


def test_bootstrap_accuracy_is_seeded_and_brackets_the_estimate() -> None:
    runs = [_trajectory(str(i), i % 2 == 0) for i in range(40)]
    ci = bootstrap_accuracy(runs, n_resamples=500, seed=3)
    assert ci.low is not None and ci.high is not None
    assert 0.25 < ci.low < 0.5 < ci.high < 0.75
    assert ci == bootstrap_accuracy(runs, n_resamples=500, seed=3)
    assert bootstrap_accuracy([_trajectory(str(i), True) for i in range(5)]).low == 1.0
    with pytest.raises(DataError, match="ungraded"):
        bootstrap_accuracy([_trajectory("a", None)])
    with pytest.raises(ConfigError, match="confidence level"):
        bootstrap_accuracy(runs, level=95)


def _run(n_correct: int, strong: int, n: int = 20) -> list[Trajectory]:
    return [_trajectory(str(i), i < n_correct, strong=strong) for i in range(n)]


def _cpt50(points: Sequence[Point], refs: References) -> float | None:
    return cpt(points, refs, 0.5)


def test_bootstrap_curve_brackets_the_point_estimates() -> None:
    weak, strong = _run(8, 0), _run(16, 200)
    curve = [_run(12, 100), _run(15, 150)]
    metrics = {"cpt50": _cpt50, "delta_ibc": delta_ibc, "apgr": apgr}
    cis = bootstrap_curve(curve, weak, strong, metrics, n_resamples=300, seed=1)
    refs = References(0.4, 0.8, 200.0)
    for name, metric in metrics.items():
        point = metric([(100, 0.6), (150, 0.75)], refs)
        ci = cis[name]
        assert point is not None and ci.low is not None and ci.high is not None
        assert ci.low <= point <= ci.high
    assert cis == bootstrap_curve(curve, weak, strong, metrics, n_resamples=300, seed=1)


def test_bootstrap_curve_undefined_gives_no_upper_bound() -> None:
    # strong is no better than weak on most resamples: CPT is undefined there.
    cis = bootstrap_curve([_run(10, 100)], _run(8, 0), _run(8, 200), {"cpt50": _cpt50}, n_resamples=200)
    assert cis["cpt50"].high is None


def test_bootstrap_curve_needs_the_same_problems() -> None:
    with pytest.raises(DataError, match="curve run 0 does not cover the same problems"):
        bootstrap_curve([_run(5, 100, n=10)], _run(8, 0), _run(16, 200), {"cpt50": _cpt50})


def test_bootstrap_ratio_is_paired() -> None:
    weak, strong = _run(8, 0), _run(16, 200)
    steep, shallow = [_run(16, 50)], [_run(15, 100)]
    itself = bootstrap_ratio(steep, steep, weak, strong, delta_ibc, n_resamples=200)
    assert (itself.low, itself.high) == (pytest.approx(1.0), pytest.approx(1.0))  # same draws: exactly 1
    refs = References(0.4, 0.8, 200.0)
    point = (delta_ibc([(50, 0.8)], refs) or 0) / (delta_ibc([(100, 0.75)], refs) or 1)
    ci = bootstrap_ratio(steep, shallow, weak, strong, delta_ibc, n_resamples=300, seed=2)
    assert ci.low is not None and ci.high is not None and ci.low <= point <= ci.high
