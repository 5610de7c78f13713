"""Is TRIM-Thr's gain in a ``trim demo`` run more than noise? Paired comparisons on the same problems.

For each TRIM-Thr row of the run's ``demo.json``: its accuracy minus weak-only's, and minus random step
routing at the same strong-token budget, as the mean of per-problem differences (1, 0 or -1) with a 95 %
bootstrap interval over problems (paired: both methods are resampled on the same draw), plus how many
problems only one of the two solved.

    python bench/demo_paired.py trim-demo [--resamples 10000]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from trimroute.eval.metrics import bootstrap_mean
from trimroute.trajectories import read_trajectories


def solved(out: Path, row: dict) -> dict[str, bool]:
    return {t.problem.id: bool(t.correct) for t in read_trajectories(out / row["trajectories"])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path, help="output folder of a `trim demo` run (holds demo.json)")
    ap.add_argument("--resamples", type=int, default=10_000)
    args = ap.parse_args()

    rows = {r["method"]: r for r in json.loads((args.out / "demo.json").read_text())["rows"]}
    random_for = {r["matches"]: m for m, r in rows.items() if r["matches"]}
    table = Table(title=f"paired accuracy differences, {args.out}")
    for col in ("TRIM-Thr", "vs", "difference", "95 % CI", "only TRIM solved", "only other solved"):
        table.add_column(col, justify="left" if col in ("TRIM-Thr", "vs") else "right")
    for method in (m for m in rows if m.startswith("thr:")):
        trim = solved(args.out, rows[method])
        for other in ("weak", random_for.get(method)):
            if other is None:
                continue
            base = solved(args.out, rows[other])
            diff = np.array([int(trim[i]) - int(base[i]) for i in trim], dtype=float)
            ci = bootstrap_mean(diff, n_resamples=args.resamples)
            table.add_row(
                method,
                other,
                f"{diff.mean():+.1%}",
                f"[{ci.low:+.1%}, {ci.high:+.1%}]",
                str(int((diff > 0).sum())),
                str(int((diff < 0).sum())),
            )
    Console().print(table)


if __name__ == "__main__":
    main()
