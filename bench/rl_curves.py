"""Simulated accuracy–cost curves of TRIM-Thr, TRIM-Agg, TRIM-Seq and TRIM-POMDP, and returns at each λ.

Every policy routes the same simulated test problems (set 0, apart from the training and validation
sets of ``trim train``) through the one engine with the calibrated simulator of ``--preset``. For each λ
of the learned policies it reports the expected return (accuracy − λ·mean strong tokens) with 95 % CIs,
the best threshold policy at that λ (every k of a 0.05 grid, weak-only and strong-only included, chosen
on the test set itself, which favours the baseline), and the paired difference to it per problem (common
random numbers: the simulator's draws are keyed by the prefix, so policies that agree share their draws).
Each curve also gets CPT(50/80/95 %) as a share of strong-only tokens, ΔIBC and its reach (DESIGN.md §6).

TRIM-POMDP is solved on the model of every preset in ``--pomdp-models`` and always run in ``--preset``'s
simulator: a model other than ``--preset`` is misspecified (e.g. ``qwen1.5b-7b-processbench``, the
official release's model, in the fitted simulator). ``oracle`` is the oracle step router.

    python bench/rl_curves.py --agg runs/agg/curve.json --seq runs/seq/curve.json \\
        --pomdp 5e-3 2e-3 1e-3 5e-4 --out docs/rl_results.json --plot docs/img/rl_sim_curves
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

from trimroute.eval.metrics import References, cpt, delta_ibc, pgr
from trimroute.eval.plots import plot_curves
from trimroute.policies import parse_policy
from trimroute.runner import simulated_engine
from trimroute.sim.backend import is_sim_correct, simulated_problems

THRESHOLDS = ["weak", *(f"thr:{0.05 * i:.2f}" for i in range(1, 20)), "strong"]
ORACLE = "oracle"  # thr:0.5 on the oracle scorer: regenerates exactly the first wrong step


def outcomes(preset: str, spec: str, n: int, cache: Path | None) -> np.ndarray:
    """Per-problem correctness and strong tokens of ``spec`` on the first ``n`` test problems (id order),
    as a (2, n) array; kept in ``cache`` (keyed by preset, n and spec: artifacts must not change)."""
    file = None
    if cache is not None:
        file = cache / (re.sub(r"[^A-Za-z0-9.=-]+", "_", f"{preset}.{n}.{spec}") + ".npy")
        if file.exists():
            return np.load(file)

    async def go() -> list:
        engine = simulated_engine(preset, seed=0, oracle=spec == ORACLE)
        policy = parse_policy("thr:0.5" if spec == ORACLE else spec)
        return [t async for t in engine.run(simulated_problems(n, seed=0), policy)]

    trajectories = sorted(asyncio.run(go()), key=lambda t: int(t.problem.id.rsplit("-", 1)[1]))
    result = np.array([[is_sim_correct(t) for t in trajectories], [t.strong_tokens for t in trajectories]], float)
    if file is not None:
        file.parent.mkdir(parents=True, exist_ok=True)
        np.save(file, result)
    return result


def mean_ci(x: np.ndarray) -> list[float]:
    half = 1.96 * x.std(ddof=1) / np.sqrt(len(x))
    return [float(x.mean()), float(x.mean() - half), float(x.mean() + half)]


def curve_metrics(points: list[tuple[float, float]], r_weak: float, r_strong: float, c_strong: float) -> dict:
    """CPT(50/80/95 %) as a share of strong-only tokens, ΔIBC and reach (highest PGR of the curve's points)."""
    refs = References(r_weak, r_strong, c_strong)  # every metric on the one frontier (docs/eval.md)
    shares = {f"cpt{round(100 * x)}_share": cpt(points, refs, x) for x in (0.5, 0.8, 0.95)}
    return {
        **{k: None if v is None else v / c_strong for k, v in shares.items()},
        "delta_ibc": delta_ibc(points, refs),
        "reach": max(pgr(a, r_weak, r_strong) or 0.0 for _, a in points),
    }


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
    ap.add_argument("--pomdp-models", nargs="*", default=None,
                    help="presets whose model TRIM-POMDP is solved on (default: --preset only)")  # fmt: skip
    ap.add_argument("--cache", type=Path, help="folder keeping each policy's outcomes between runs")
    ap.add_argument("--out", default="docs/rl_results.json")
    ap.add_argument("--plot", default="docs/img/rl_sim_curves")
    args = ap.parse_args()
    torch.set_num_threads(1)

    pomdp_names = {m: "TRIM-POMDP" if m == args.preset else f"TRIM-POMDP (model {m})"
                   for m in args.pomdp_models or [args.preset]}  # fmt: skip
    runs: dict[str, list[tuple[float | None, str]]] = {
        "TRIM-Thr": [(None, spec) for spec in THRESHOLDS],
        "TRIM-Agg": learned_points(args.agg),
        "TRIM-Seq": learned_points(args.seq),
        **{name: [(lam, f"pomdp:preset={m},lam={lam:g}") for lam in args.pomdp] for m, name in pomdp_names.items()},
        "oracle step router": [(None, ORACLE)],
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
    weak, strong = results["weak"], results["strong"]
    r_weak, r_strong, c_strong = float(weak[0].mean()), float(strong[0].mean()), float(strong[1].mean())
    plot_curves(
        curves,
        args.plot,
        r_weak=r_weak,
        r_strong=r_strong,
        c_strong=c_strong,
        title=f"Simulator {args.preset}: {args.problems} test problems",
    )

    lams = sorted({lam for pts in runs.values() for lam, _ in pts if lam is not None}, reverse=True)
    table = []
    for lam in lams:
        ret = {s: r[0] - lam * r[1] for s, r in results.items()}
        best_thr = max((s for _, s in runs["TRIM-Thr"]), key=lambda s: ret[s].mean())
        row: dict = {"lam": lam, "best_thr": {"policy": best_thr, "return": mean_ci(ret[best_thr])}}
        for name in ("TRIM-Agg", "TRIM-Seq", *pomdp_names.values()):
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
        "metrics": {name: curve_metrics(pts, r_weak, r_strong, c_strong) for name, pts in curves.items()},
        "returns": table,
    }
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    for name, m in report["metrics"].items():
        print(name, json.dumps(m))
    for row in table:
        print(json.dumps(row))


if __name__ == "__main__":
    main()
