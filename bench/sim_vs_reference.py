"""Simulated TRIM-Thr vs the measured MATH-500 curve, and TRIM-POMDP vs TRIM-Thr in the simulator.

    python bench/sim_vs_reference.py [--problems 4000] [--preset qwen1.5b-7b]

Prints the tables of docs/simulator.md, writes their numbers to docs/img/sim_validation.json and the plot
docs/img/sim_thr_vs_pomdp.png. Returns are R·correct − λ·strong tokens (R = 1) with 95 % CIs; the POMDP
vs best-threshold difference is paired by problem (both run on the same simulated problems).
"""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path

import numpy as np
from rich.progress import track

from trimroute.eval.plots import plot_curves
from trimroute.learn.pomdp_model import POMDPModel
from trimroute.learn.pomdp_solver import solve
from trimroute.learn.presets import load_params
from trimroute.learn.simulator import is_sim_correct, simulated_engine, simulated_problems
from trimroute.policies import parse_policy
from trimroute.policies.base import Policy
from trimroute.policies.pomdp import POMDPPolicy

ROOT = Path(__file__).parents[1]
REFERENCE = ROOT / ".." / "shared" / "calibration" / "reference_curves_math500_qwen1.5b_7b.json"
THRESHOLDS = [round(0.05 * i, 2) for i in range(21)]
LAMS = [3e-3, 2e-3, 1e-3, 5e-4, 3e-4, 1e-4]


async def run(preset: str, policy: Policy, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-problem correctness and strong tokens, ordered by problem."""
    engine = simulated_engine(preset, seed=0)
    problems = simulated_problems(n)
    order = {p.id: i for i, p in enumerate(problems)}
    correct, cost = np.zeros(n), np.zeros(n)
    async for t in engine.run(problems, policy):
        correct[order[t.problem.id]] = is_sim_correct(t)
        cost[order[t.problem.id]] = t.strong_tokens
    return correct, cost


def ci(x: np.ndarray) -> tuple[float, float]:
    return float(x.mean()), float(1.96 * x.std(ddof=1) / np.sqrt(len(x)))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--problems", type=int, default=4000)
    ap.add_argument("--preset", default="qwen1.5b-7b")
    args = ap.parse_args()
    reference = {round(r["threshold"], 2): r for r in json.loads(REFERENCE.read_text())["trim_thr"]}
    thr = {k: asyncio.run(run(args.preset, parse_policy(f"thr:{k}"), args.problems)) for k in track(THRESHOLDS, "thr")}
    model = POMDPModel.from_params(load_params(args.preset))
    pomdp = {}
    for lam in track(LAMS, "pomdp"):
        solution = solve(model, lam)
        pomdp[lam] = (asyncio.run(run(args.preset, POMDPPolicy(solution, f"lam={lam:g}"), args.problems)),
                      solution.value(model.initial_belief), solution.solve_seconds)  # fmt: skip

    print("| k | sim acc % | measured acc % | Δ | sim strong tok | measured strong tok | Δ |")
    print("|---|---|---|---|---|---|---|")
    rows = []
    for k, (c, t) in thr.items():
        ref = reference[k]
        a, a_ci = ci(c)
        rows.append({"k": k, "sim_acc": a, "sim_acc_ci": a_ci, "sim_cost": t.mean(), "ref_acc": ref["accuracy"],
                     "ref_cost": ref["avg_target_tokens_per_question"]})  # fmt: skip
        print(f"| {k:.2f} | {100 * a:.1f} ± {100 * a_ci:.1f} | {100 * ref['accuracy']:.1f} | "
              f"{100 * (a - ref['accuracy']):+.1f} | {t.mean():.1f} | {ref['avg_target_tokens_per_question']:.1f} | "
              f"{t.mean() - ref['avg_target_tokens_per_question']:+.1f} |")  # fmt: skip

    print(
        "\n| λ | POMDP acc % | POMDP strong tok | POMDP return | best thr (k) return | paired Δ return | "
        "thr envelope acc at POMDP cost | model value | solve s |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    env_x = [float(t.mean()) for _, t in thr.values()]
    env_y = [float(c.mean()) for c, _ in thr.values()]
    order = np.argsort(env_x)
    xs, ys = np.array(env_x)[order], np.maximum.accumulate(np.array(env_y)[order])
    summary = []
    for lam, ((c, t), value, secs) in pomdp.items():
        ret = c - lam * t
        best_k = max(thr, key=lambda k: float((thr[k][0] - lam * thr[k][1]).mean()))
        best = thr[best_k][0] - lam * thr[best_k][1]
        (r, r_ci), (b, b_ci), (d, d_ci) = ci(ret), ci(best), ci(ret - best)
        thr_acc = float(np.interp(t.mean(), xs, ys))
        summary.append({"lam": lam, "acc": c.mean(), "cost": t.mean(), "return": r, "return_ci": r_ci,
                        "best_thr": best_k, "best_thr_return": b, "best_thr_return_ci": b_ci, "paired_diff": d,
                        "paired_diff_ci": d_ci, "thr_acc_at_cost": thr_acc, "model_value": value,
                        "solve_s": secs})  # fmt: skip
        print(f"| {lam:g} | {100 * c.mean():.1f} | {t.mean():.1f} | {r:.4f} ± {r_ci:.4f} | {b:.4f} ± {b_ci:.4f} "
              f"({best_k:.2f}) | {d:+.4f} ± {d_ci:.4f} | {100 * thr_acc:.1f} | {value:.4f} | {secs:.1f} |")  # fmt: skip

    out = ROOT / "docs" / "img"
    (out / "sim_validation.json").write_text(json.dumps({"problems": args.problems, "preset": args.preset,
                                                         "thr": rows, "pomdp": summary}, indent=1) + "\n")  # fmt: skip
    weak, strong = reference[0.0], reference[1.0]
    plot_curves(
        {
            "TRIM-Thr (simulated)": [(r["sim_cost"], r["sim_acc"]) for r in rows],
            "TRIM-POMDP (simulated)": [(s["cost"], s["acc"]) for s in summary],
            "TRIM-Thr (measured, MATH-500)": [(r["ref_cost"], r["ref_acc"]) for r in rows],
        },
        out / "sim_thr_vs_pomdp",
        r_weak=weak["accuracy"], r_strong=strong["accuracy"], c_strong=strong["avg_target_tokens_per_question"],
        title=f"{args.preset}: simulated vs measured",
    )  # fmt: skip


if __name__ == "__main__":
    main()
