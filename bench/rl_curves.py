"""Simulated accuracy–cost curves of TRIM-Thr, TRIM-Agg, TRIM-Seq and TRIM-POMDP, and returns at each λ.

Every policy routes the same simulated test problems (set 0, apart from the training and validation
sets of ``trim train``) through the one engine with the calibrated simulator of ``--preset``. For each λ
of the learned policies it reports the expected return (accuracy − λ·mean strong tokens) with 95 % CIs,
the best threshold policy at that λ (chosen on the test set itself, which favours the baseline), and
the paired difference to it per problem (common random numbers: the simulator's draws are keyed by the
prefix, so policies that agree share their draws).

    python bench/rl_curves.py --agg runs/agg/curve.json --seq runs/seq/curve.json \\
        --pomdp 5e-3 2e-3 1e-3 --out docs/rl_results.json --plot docs/img/rl_sim_curves
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
from pathlib import Path

import numpy as np
import torch
from rich.progress import Progress

from trimroute.eval.plots import plot_curves
from trimroute.learn.simulator import is_sim_correct, simulated_engine, simulated_problems
from trimroute.policies import parse_policy

THRESHOLDS = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 1.0]


def outcomes(preset: str, spec: str, n: int, cache: Path | None) -> np.ndarray:
    """Per-problem correctness and strong tokens of ``spec`` on the first ``n`` test problems (id order),
    as a (2, n) array; kept in ``cache`` (keyed by preset, n and spec: artifacts must not change)."""
    file = None
    if cache is not None:
        file = cache / (re.sub(r"[^A-Za-z0-9.=-]+", "_", f"{preset}.{n}.{spec}") + ".npy")
        if file.exists():
            return np.load(file)

    async def go() -> list:
        engine = simulated_engine(preset, seed=0)
        return [t async for t in engine.run(simulated_problems(n, seed=0), parse_policy(spec))]

    trajectories = sorted(asyncio.run(go()), key=lambda t: int(t.problem.id.rsplit("-", 1)[1]))
    result = np.array([[is_sim_correct(t) for t in trajectories], [t.strong_tokens for t in trajectories]], float)
    if file is not None:
        file.parent.mkdir(parents=True, exist_ok=True)
        np.save(file, result)
    return result


def mean_ci(x: np.ndarray) -> list[float]:
    half = 1.96 * x.std(ddof=1) / np.sqrt(len(x))
    return [float(x.mean()), float(x.mean() - half), float(x.mean() + half)]


def learned_points(curve_file: str | None) -> list[tuple[float, str]]:
    if not curve_file:
        return []
    return [(p["lam"], p["policy"]) for p in json.loads(Path(curve_file).read_text())["points"]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="qwen1.5b-7b")
    ap.add_argument("--problems", type=int, default=5000)
    ap.add_argument("--agg", help="curve.json of a `trim train agg` sweep")
    ap.add_argument("--seq", help="curve.json of a `trim train seq` sweep")
    ap.add_argument("--pomdp", nargs="*", type=float, default=[], help="λ values to solve TRIM-POMDP at")
    ap.add_argument("--cache", type=Path, help="folder keeping each policy's outcomes between runs")
    ap.add_argument("--out", default="docs/rl_results.json")
    ap.add_argument("--plot", default="docs/img/rl_sim_curves")
    args = ap.parse_args()
    torch.set_num_threads(1)

    runs: dict[str, list[tuple[float | None, str]]] = {
        "TRIM-Thr": [(None, f"thr:{k:g}") for k in THRESHOLDS],
        "TRIM-Agg": learned_points(args.agg),
        "TRIM-Seq": learned_points(args.seq),
        "TRIM-POMDP": [(lam, f"pomdp:preset={args.preset},lam={lam:g}") for lam in args.pomdp],
    }
    results: dict[str, np.ndarray] = {}
    with Progress() as progress:
        task = progress.add_task("policies", total=sum(len(v) for v in runs.values()))
        for points in runs.values():
            for _, spec in points:
                results[spec] = outcomes(args.preset, spec, args.problems, args.cache)
                progress.advance(task)

    curves = {
        name: [(float(results[s][1].mean()), float(results[s][0].mean())) for _, s in pts]
        for name, pts in runs.items()
        if pts
    }
    weak, strong = results["thr:0"], results["thr:1"]
    plot_curves(
        curves,
        args.plot,
        r_weak=weak[0].mean(),
        r_strong=strong[0].mean(),
        c_strong=strong[1].mean(),
        title=f"Simulator {args.preset}: {args.problems} test problems",
    )

    lams = sorted({lam for pts in runs.values() for lam, _ in pts if lam is not None}, reverse=True)
    table = []
    for lam in lams:
        ret = {s: r[0] - lam * r[1] for s, r in results.items()}
        best_thr = max((s for _, s in runs["TRIM-Thr"]), key=lambda s: ret[s].mean())
        row: dict = {"lam": lam, "best_thr": {"policy": best_thr, "return": mean_ci(ret[best_thr])}}
        for name in ("TRIM-Agg", "TRIM-Seq", "TRIM-POMDP"):
            spec = next((s for lam_, s in runs[name] if lam_ == lam), None)
            if spec is None:
                continue
            row[name] = {
                "policy": spec,
                "accuracy": float(results[spec][0].mean()),
                "strong_tokens": float(results[spec][1].mean()),
                "return": mean_ci(ret[spec]),
                "minus_best_thr": mean_ci(ret[spec] - ret[best_thr]),
            }
        if "TRIM-POMDP" in row:
            pomdp = row["TRIM-POMDP"]["return"][0]
            for name in ("TRIM-Agg", "TRIM-Seq"):
                if name in row:
                    spec = row[name]["policy"]
                    row[name]["share_of_pomdp_return"] = float(ret[spec].mean() / pomdp)
                    row[name]["minus_pomdp"] = mean_ci(ret[spec] - ret[row["TRIM-POMDP"]["policy"]])
        table.append(row)
    report = {
        "preset": args.preset,
        "problems": args.problems,
        "curves": {
            name: [
                {
                    "policy": s,
                    "lam": lam,
                    "accuracy": float(results[s][0].mean()),
                    "strong_tokens": float(results[s][1].mean()),
                }
                for lam, s in pts
            ]
            for name, pts in runs.items()
        },
        "returns": table,
    }
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    for row in table:
        print(json.dumps(row))


if __name__ == "__main__":
    main()
