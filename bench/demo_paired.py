"""Is TRIM-Thr's gain in a ``trim demo`` run more than noise? Paired comparisons on the same problems.

For each TRIM-Thr point of the run directory (``trim demo`` and ``trim eval`` write the same): its accuracy
minus weak-only's, and minus random step routing at the same strong-token budget (each ``random:matched``
family's point, ``notes.matched_random`` in ``config.json``), as the mean of per-problem differences (1, 0 or
-1) with a 95 % bootstrap interval over problems (paired: both methods are resampled on the same draw), plus
how many problems only one of the two solved.

    python bench/demo_paired.py trim-demo [--resamples 10000]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from trimroute.eval.metrics import bootstrap_mean
from trimroute.eval.rundir import RunDir


def paired(run: RunDir, resamples: int = 10_000) -> list[dict]:
    """Per TRIM-Thr point: its paired difference from weak-only and from its matched random point."""
    solved = {p.name: {t.problem.id: bool(t.correct) for t in run.trajectories(p)} for p in run.points}
    matched = run.config().get("notes", {}).get("matched_random", {})  # random point -> its thr point
    rows = []
    for method in (m for m in solved if m.startswith("thr:") and m != "thr:0"):
        trim = solved[method]
        for other in ("weak", *(random for random, thr in matched.items() if thr == method)):
            base = solved[other]
            diff = np.array([int(trim[i]) - int(base[i]) for i in trim], dtype=float)
            ci = bootstrap_mean(diff, n_resamples=resamples)
            rows.append({"trim": method, "vs": other, "difference": float(diff.mean()), "ci95": [ci.low, ci.high],
                         "only_trim": int((diff > 0).sum()), "only_other": int((diff < 0).sum())})  # fmt: skip
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path, help="run directory of `trim demo` or `trim eval`")
    ap.add_argument("--resamples", type=int, default=10_000)
    args = ap.parse_args()

    table = Table(title=f"paired accuracy differences, {args.out}")
    for col in ("TRIM-Thr", "vs", "difference", "95 % CI", "only TRIM solved", "only other solved"):
        table.add_column(col, justify="left" if col in ("TRIM-Thr", "vs") else "right")
    for r in paired(RunDir(args.out), args.resamples):
        low, high = r["ci95"]
        table.add_row(r["trim"], r["vs"], f"{r['difference']:+.1%}", f"[{low:+.1%}, {high:+.1%}]",
                      str(r["only_trim"]), str(r["only_other"]))  # fmt: skip
    Console().print(table)


if __name__ == "__main__":
    main()
