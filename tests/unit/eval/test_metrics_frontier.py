"""CPT, ΔIBC and APGR on the frontier: golden numbers of the official curves, and properties of any curve.

The expected numbers are computed here by brute force over pairs of points (any two settings mixed at
random), not with the hull that ``eval/metrics.py`` builds.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trimroute.eval.metrics import Point, References, apgr, cpt, delta_ibc, reach

CURVES = Path(__file__).resolve().parents[3].parent / "shared" / "calibration"
REFERENCE_CURVES = CURVES / "reference_curves_math500_qwen1.5b_7b.json"


def _official() -> tuple[References, dict[str, list[Point]]]:
    data = json.loads(REFERENCE_CURVES.read_text(encoding="utf-8"))

    def points(rows: list[dict[str, float]]) -> list[Point]:
        return [(r["avg_target_tokens_per_question"], r["num_correct"] / 500) for r in rows]

    thr = {r["threshold"]: r for r in data["trim_thr"]}
    weak, strong = thr[0.0], thr[1.0]  # threshold 0 never routes, 1 always does
    refs = References(weak["num_correct"] / 500, strong["num_correct"] / 500, strong["avg_target_tokens_per_question"])
    return refs, {"thr": points(data["trim_thr"]), "pomdp": points(data["trim_pomdp"])}


# --- the plain computation -----------------------------------------------------------------------------


def _all_points(points: list[Point], refs: References) -> list[Point]:
    return [(0.0, refs.r_weak), (refs.c_strong, refs.r_strong), *points]


def _plain_cost(points: list[Point], refs: References, target: float) -> float:
    """Least cost of any point, or mix of two points, whose accuracy is at least ``target``."""
    pts = _all_points(points, refs)
    best = min((c for c, a in pts if a >= target), default=float("inf"))
    for c0, a0 in pts:
        for c1, a1 in pts:
            if a0 < target <= a1:  # mix the two so that the accuracy is exactly the target
                best = min(best, c0 + (c1 - c0) * (target - a0) / (a1 - a0))
    return best


def _plain_accuracy(points: list[Point], refs: References, budget: float) -> float:
    """Best accuracy of any point, or mix of two points, whose cost is at most ``budget``."""
    pts = _all_points(points, refs)
    best = max(a for c, a in pts if c <= budget)
    for c0, a0 in pts:
        for c1, a1 in pts:
            if c0 <= budget < c1:
                best = max(best, a0 + (a1 - a0) * (budget - c0) / (c1 - c0))
    return best


def _plain_metrics(points: list[Point], refs: References) -> dict[str, float]:
    gap, base = refs.r_strong - refs.r_weak, (refs.r_strong - refs.r_weak) / refs.c_strong
    out = {f"cpt{x}": _plain_cost(points, refs, refs.r_weak + x / 100 * gap) for x in (50, 80, 95)}
    bins = [gap * (b + 0.5) / 100 for b in range(100)]
    out["delta_ibc"] = sum((g / _plain_cost(points, refs, refs.r_weak + g) - base) / base for g in bins) / 100
    # The best accuracy is piecewise linear in the budget with kinks at point costs: trapezoids are exact.
    xs = sorted({0.0, refs.c_strong, *(c for c, _ in points if c < refs.c_strong)})
    ys = [_plain_accuracy(points, refs, x) for x in xs]
    area = sum((xs[i + 1] - xs[i]) * (ys[i] + ys[i + 1]) / 2 for i in range(len(xs) - 1))
    out["apgr"] = (area / refs.c_strong - refs.r_weak) / gap
    return out


# --- golden ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("curve", ["thr", "pomdp"])
def test_official_curves_match_the_plain_computation(curve: str) -> None:
    refs, curves = _official()
    points = curves[curve]
    expected = _plain_metrics(points, refs)
    for x in (50, 80, 95):
        assert cpt(points, refs, x / 100) == pytest.approx(expected[f"cpt{x}"], rel=1e-9)
    assert delta_ibc(points, refs) == pytest.approx(expected["delta_ibc"], rel=1e-9)
    assert apgr(points, refs) == pytest.approx(expected["apgr"], rel=1e-9)


def test_official_curves_golden_numbers() -> None:
    """The numbers docs/eval.md quotes (plain computation), to 3 significant digits."""
    refs, curves = _official()
    assert (refs.r_weak, refs.r_strong, refs.c_strong) == (0.364, 0.73, 494.84)
    expected = {
        "thr": {"cpt50": 84.24, "cpt80": 136.8, "cpt95": 215.0, "delta_ibc": 1.809, "apgr": 0.8055},
        "pomdp": {"cpt50": 56.81, "cpt80": 123.9, "cpt95": 366.5, "delta_ibc": 3.292, "apgr": 0.8156},
    }
    shares = {"thr": (0.1702, 0.2764, 0.4344), "pomdp": (0.1148, 0.2503, 0.7407)}  # CPT / C̄_strong-only
    for curve, numbers in expected.items():
        plain = _plain_metrics(curves[curve], refs)
        assert plain == {k: pytest.approx(v, rel=1e-3) for k, v in numbers.items()}
        share = [plain[f"cpt{x}"] / refs.c_strong for x in (50, 80, 95)]
        assert share == [pytest.approx(v, abs=1e-4) for v in shares[curve]]
    # Reach: TRIM-Thr's own points include strong-only (threshold 1); the POMDP's best point is 0.684.
    assert reach(curves["thr"], refs) == pytest.approx(1.0)
    assert reach(curves["pomdp"], refs) == pytest.approx((0.684 - 0.364) / 0.366)


# --- properties -------------------------------------------------------------------------------------------

REFS = References(0.4, 0.8, 400.0)
# Positive costs: a point free and better than weak-only has infinite IBC, and ΔIBC leaves its bins out.
POINTS = st.tuples(st.floats(1.0, 800.0), st.floats(0.0, 1.0))
CURVE = st.lists(POINTS, min_size=1, max_size=12)


@settings(max_examples=200, deadline=None)
@given(CURVE, POINTS)
def test_adding_a_point_never_lowers_delta_ibc_or_apgr(points: list[Point], extra: Point) -> None:
    more = [*points, extra]
    assert (delta_ibc(more, REFS) or 0.0) >= (delta_ibc(points, REFS) or 0.0) - 1e-9
    assert (apgr(more, REFS) or 0.0) >= (apgr(points, REFS) or 0.0) - 1e-9
    assert (cpt(more, REFS, 0.8) or 0.0) <= (cpt(points, REFS, 0.8) or 0.0) + 1e-9


@settings(max_examples=200, deadline=None)
@given(CURVE, st.floats(1.0, 800.0))
def test_a_curve_cut_short_never_scores_above_the_curve_continued(points: list[Point], cut: float) -> None:
    short = [p for p in points if p[0] <= cut]
    assert (delta_ibc(short, REFS) or 0.0) <= (delta_ibc(points, REFS) or 0.0) + 1e-9
    assert (apgr(short, REFS) or 0.0) <= (apgr(points, REFS) or 0.0) + 1e-9
    for x in (0.5, 0.8, 0.95):
        assert (cpt(short, REFS, x) or 0.0) >= (cpt(points, REFS, x) or 0.0) - 1e-9
