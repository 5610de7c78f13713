"""The official measured MATH-500 curves under the old and the new metric definitions, side by side.

Old: each curve read along its own upper envelope from the weak-only point, ΔIBC averaged over the bins
the curve reaches (``eval/metrics.py`` at ``--old REV``); old + strong-only: the same with the strong-only
point added to the curve (the completion alone). New: every metric on the frontier, the concave hull with
weak-only, strong-only and their mixtures (the current ``eval/metrics.py``). Prints a Markdown table.

    python bench/frontier_metrics.py [--old 1742756] [--curves FILE]   # default: the official MATH-500 curves
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import types
from pathlib import Path

from trimroute.eval import metrics as new

ROOT = Path(__file__).resolve().parents[1]
CURVES = ROOT.parent / "shared" / "calibration" / "reference_curves_math500_qwen1.5b_7b.json"


def old_metrics(rev: str) -> types.ModuleType:
    """``eval/metrics.py`` as it was at ``rev``, loaded as a module of its own."""
    source = subprocess.run(
        ["git", "show", f"{rev}:src/trimroute/eval/metrics.py"], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout
    module = sys.modules["old_metrics"] = types.ModuleType("old_metrics")  # dataclasses look it up
    exec(compile(source, f"{rev}:metrics.py", "exec"), module.__dict__)
    return module


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--old", default="1742756", help="git revision holding the old definition")
    ap.add_argument("--curves", type=Path, default=CURVES)
    args = ap.parse_args()
    data = json.loads(args.curves.read_text(encoding="utf-8"))
    thr = {r["threshold"]: r for r in data["trim_thr"]}
    n = thr[0.0]["num_correct"] / thr[0.0]["accuracy"]
    r_weak, r_strong = thr[0.0]["num_correct"] / n, thr[1.0]["num_correct"] / n
    c_strong = thr[1.0]["avg_target_tokens_per_question"]
    refs = new.References(r_weak, r_strong, c_strong)
    strong = (c_strong, r_strong)
    old = old_metrics(args.old)
    print(f"r_weak {r_weak:.3f} · r_strong {r_strong:.3f} · C̄ strong-only {c_strong:.1f} tokens\n")
    print("| curve | definition | CPT(50%) | CPT(80%) | CPT(95%) | ΔIBC | APGR | reach |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, key in (("TRIM-Thr", "trim_thr"), ("TRIM-POMDP", "trim_pomdp")):
        points = [(r["avg_target_tokens_per_question"], r["num_correct"] / n) for r in data[key]]
        rows = {
            "old": (
                [old.cpt(points, r_weak, r_strong, x) for x in (0.5, 0.8, 0.95)],
                old.delta_ibc(points, r_weak, r_strong, c_strong),
                old.apgr(points, r_weak, r_strong, c_strong),
            ),
            # the old staircase with the strong-only point added: the completion without the hull
            "old + strong-only": (
                [old.cpt([*points, strong], r_weak, r_strong, x) for x in (0.5, 0.8, 0.95)],
                old.delta_ibc([*points, strong], r_weak, r_strong, c_strong),
                old.apgr([*points, strong], r_weak, r_strong, c_strong),
            ),
            "frontier": (
                [new.cpt(points, refs, x) for x in (0.5, 0.8, 0.95)],
                new.delta_ibc(points, refs),
                new.apgr(points, refs),
            ),
        }
        reach = new.reach(points, refs)
        for definition, (cpts, dibc, apgr) in rows.items():
            cells = ["not reached" if c is None else f"{c:.1f} tok ({c / c_strong:.1%})" for c in cpts]
            print(f"| {name} | {definition} | {' | '.join(cells)} | {dibc:.2f} | {apgr:.3f} | {reach:.2f} |")


if __name__ == "__main__":
    main()
