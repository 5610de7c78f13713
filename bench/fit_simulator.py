"""Fit the shipped simulator preset ``qwen1.5b-7b`` to the 21 measured TRIM-Thr points (MATH-500).

    python bench/fit_simulator.py [--holdout]

Regenerates the component presets from ``../shared/calibration`` (``learn.fit.write_calibration_presets``),
then fits ``learn.calibrate.fit_to_curve`` on top of ``qwen1.5b-7b-processbench`` (with the 7B's own length
distribution) and writes ``src/trimroute/presets/fitted_qwen1.5b-7b.json``. Only the ``trim_thr`` points of
the reference file are used; its ``trim_pomdp`` points are held out for ``bench/sim_vs_reference.py``.
``--holdout`` also fits on every other k (0.1, 0.2, ...) and reports the error on the 10 points left out.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from trimroute.learn.calibrate import CurvePoint, fit_to_curve, thr_curve
from trimroute.learn.fit import FITTED_PRESETS, write_calibration_presets
from trimroute.sim.presets import SimParams, load_params

ROOT = Path(__file__).parents[1]
CALIBRATION = ROOT / ".." / "shared" / "calibration"
REFERENCE = CALIBRATION / "reference_curves_math500_qwen1.5b_7b.json"
PRESETS = ROOT / "src" / "trimroute" / "presets"
N_MEASURED = 500  # MATH-500


def measured_thr() -> list[CurvePoint]:
    rows = json.loads(REFERENCE.read_text())["trim_thr"]
    return [
        CurvePoint(
            k=round(r["threshold"], 2),
            accuracy=r["accuracy"],
            strong_tokens=r["avg_target_tokens_per_question"],
            strong_calls=r["avg_target_calls_per_question"],
            weak_tokens=r["avg_draft_tokens_per_question"],
        )
        for r in rows
    ]


def base_params() -> SimParams:
    official = load_params("qwen1.5b-7b-processbench")
    models = json.loads((PRESETS / "models.json").read_text())["models"]
    return replace(official, strong_length_pmf=tuple(models["qwen2.5-7b"]["length_pmf"]))


def report(params: SimParams, points: list[CurvePoint], label: str) -> list[float]:
    """Print the expected curve beside the measured points; return the accuracy errors in points."""
    print(f"\n{label}\n| k | expected acc % | measured acc % | Δ | expected strong tok | measured | Δ % | calls | "
          "measured |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    errors = []
    for m, c in zip(points, thr_curve(params, [p.k for p in points]), strict=True):
        d_tok = 100 * (c.strong_tokens / m.strong_tokens - 1) if m.strong_tokens else 0.0
        errors.append(100 * (c.accuracy - m.accuracy))
        print(f"| {m.k:.2f} | {100 * c.accuracy:.1f} | {100 * m.accuracy:.1f} | {errors[-1]:+.1f} | "
              f"{c.strong_tokens:.1f} | {m.strong_tokens:.1f} | {d_tok:+.1f} | {c.strong_calls:.2f} | "
              f"{m.strong_calls:.2f} |")  # fmt: skip
    return errors


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--holdout", action="store_true", help="also fit on every other k and test on the rest")
    args = ap.parse_args()
    write_calibration_presets(CALIBRATION, PRESETS)
    points = measured_thr()
    params, fitted = fit_to_curve(base_params(), points, N_MEASURED, name="qwen1.5b-7b")
    params = replace(
        params,
        sources={
            **params.sources,
            "fit": (
                "bench/fit_simulator.py: learn.calibrate.fit_to_curve on the 21 trim_thr points of "
                "reference_curves_math500_qwen1.5b_7b.json (weak Qwen2.5-1.5B-Instruct, strong Qwen2.5-7B-Instruct, "
                "PRM Qwen2.5-Math-PRM-7B, MATH-500); weak-only and strong-only matched exactly; "
                "fitted: " + ", ".join(f"{k} {v:.4g}" for k, v in fitted.items())
            ),
            "strong_length_pmf": "Kaplan-Meier on Qwen2.5-7B-Instruct's MATH-train steps (models.json)",
            "observation": "the ProcessBench MATH-train table, each state's current score warped "
            "expit(shift + scale·logit(c)) by the fit: " + params.sources.get("observation", ""),
        },
    )
    params.save(PRESETS / FITTED_PRESETS["qwen1.5b-7b"])
    print("fitted:", json.dumps(fitted, indent=1))
    report(params, points, "fit on all 21 points")
    if args.holdout:
        train = [p for i, p in enumerate(points) if i % 2 == 0 or p.k in (0.0, 1.0)]
        test = [p for p in points if p not in train]
        half, _ = fit_to_curve(base_params(), train, N_MEASURED, name="holdout")
        errors = np.abs(report(half, test, "fit on k = 0, 0.1, ..., 1.0; the 10 points left out"))
        print(f"\nheld-out |Δ acc|: mean {errors.mean():.2f}, max {errors.max():.2f} points")


if __name__ == "__main__":
    main()
