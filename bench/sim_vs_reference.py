"""The simulator's validation gate: simulated vs measured TRIM-Thr, strong-only and (held out) TRIM-POMDP.

    python bench/sim_vs_reference.py [--problems 4000] [--preset qwen1.5b-7b] [--json docs/img/sim_validation.json]

Runs the engine on the simulator of ``--preset`` for every measured TRIM-Thr point of
``../shared/calibration/reference_curves_math500_qwen1.5b_7b.json`` (k = 0 is weak-only and k = 1 strong-only,
as in the official runs) and for each measured official TRIM-POMDP point at λ = cost_per_token / 100 (these
8 points are never used by ``bench/fit_simulator.py``). Two POMDPs run at each λ: ``pomdp_heldout`` is this
project's, solved on the preset's own model; ``pomdp_heldout_official_model`` is solved on the official
release's model (``qwen1.5b-7b-processbench``: ProcessBench table, MATH-train accuracies), as the measured
official runs were. ``oracle`` is the oracle step router (regenerates exactly the first wrong step).
"Inside" = within the measured point's 95 % interval, 1.96·sqrt(p(1-p)/500). Writes the JSON and the plot
``docs/img/sim_thr_vs_pomdp.png``; prints the tables of docs/simulator.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path
from typing import Any

import numpy as np
from rich.progress import track

from trimroute.eval.metrics import References, budgeted_accuracy
from trimroute.eval.plots import plot_curves
from trimroute.policies import parse_policy
from trimroute.policies.base import Policy
from trimroute.policies.pomdp import POMDPPolicy
from trimroute.policies.pomdp_model import POMDPModel
from trimroute.policies.pomdp_solver import solve
from trimroute.runner import simulated_engine
from trimroute.sim.backend import is_sim_correct, simulated_problems
from trimroute.sim.presets import load_params

ROOT = Path(__file__).parents[1]
REFERENCE = ROOT / ".." / "shared" / "calibration" / "reference_curves_math500_qwen1.5b_7b.json"
N_MEASURED = 500
OFFICIAL_MODEL = "qwen1.5b-7b-processbench"


async def _run(preset: str, policy: Policy, n: int, oracle: bool) -> dict[str, np.ndarray]:
    engine = simulated_engine(preset, seed=0, oracle=oracle)
    problems = simulated_problems(n)
    order = {p.id: i for i, p in enumerate(problems)}
    out = {key: np.zeros(n) for key in ("correct", "strong", "discarded", "calls")}
    async for t in engine.run(problems, policy):
        i = order[t.problem.id]
        out["correct"][i] = is_sim_correct(t)
        out["strong"][i] = t.strong_tokens
        out["discarded"][i] = t.usage.weak.discarded_tokens
        out["calls"][i] = t.usage.strong.calls
    return out


def run(preset: str, policy: Policy, n: int, oracle: bool = False) -> dict[str, np.ndarray]:
    """Per-problem correctness, strong tokens, discarded weak tokens and strong calls, ordered by problem."""
    return asyncio.run(_run(preset, policy, n, oracle))


def half_ci(p: float, n: int) -> float:
    return float(1.96 * np.sqrt(p * (1 - p) / n))


def row(sim: dict[str, np.ndarray], measured: dict[str, Any], **key: float) -> dict[str, Any]:
    """The gate's figures for one point (the first four keys after ``key`` are the ones checked)."""
    acc, ref = float(sim["correct"].mean()), float(measured["accuracy"])
    return {
        **key,
        "sim_accuracy": acc,
        "measured_accuracy": ref,
        "sim_strong_tokens": float(sim["strong"].mean()),
        "measured_strong_tokens": float(measured["avg_target_tokens_per_question"]),
        "sim_accuracy_ci": half_ci(acc, len(sim["correct"])),
        "measured_accuracy_ci": half_ci(ref, N_MEASURED),
        "inside_measured_ci": abs(acc - ref) <= half_ci(ref, N_MEASURED),
        "sim_strong_calls": float(sim["calls"].mean()),
        "measured_strong_calls": float(measured["avg_target_calls_per_question"]),
        "sim_discarded_weak_tokens": float(sim["discarded"].mean()),
        "measured_discarded_weak_tokens": float(measured["avg_discarded_draft_tokens_per_question"]),
    }


def print_table(title: str, rows: list[dict[str, Any]], key: str) -> None:
    print(f"\n{title}\n| {key} | sim acc % | measured acc % (± 95 %) | Δ | sim strong tok | measured | Δ % | "
          "sim calls | measured | sim discarded weak tok | measured |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        d_tok = 100 * (r["sim_strong_tokens"] / r["measured_strong_tokens"] - 1) if r["measured_strong_tokens"] else 0
        print(f"| {r[key]:g} | {100 * r['sim_accuracy']:.1f} | {100 * r['measured_accuracy']:.1f} ± "
              f"{100 * r['measured_accuracy_ci']:.1f} | {100 * (r['sim_accuracy'] - r['measured_accuracy']):+.1f}"
              f"{'' if r['inside_measured_ci'] else ' ✗'} | {r['sim_strong_tokens']:.1f} | "
              f"{r['measured_strong_tokens']:.1f} | {d_tok:+.1f} | {r['sim_strong_calls']:.2f} | "
              f"{r['measured_strong_calls']:.2f} | {r['sim_discarded_weak_tokens']:.1f} | "
              f"{r['measured_discarded_weak_tokens']:.1f} |")  # fmt: skip


def add_thr_gap(rows: list[dict[str, Any]], thr: list[dict[str, Any]]) -> None:
    """Each POMDP point's accuracy minus the Thr envelope's at the same cost, simulated and measured."""
    for who in ("sim", "measured"):
        curve = sorted((r[f"{who}_strong_tokens"], r[f"{who}_accuracy"]) for r in thr)
        # the envelope of the Thr points themselves: its cheapest and dearest points are the references
        refs = References(r_weak=curve[0][1], r_strong=curve[-1][1], c_strong=curve[-1][0])
        for r in rows:
            at = budgeted_accuracy(curve, refs, r[f"{who}_strong_tokens"])
            r[f"{who}_minus_thr_envelope"] = r[f"{who}_accuracy"] - at


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    gaps = np.array([r["sim_accuracy"] - r["measured_accuracy"] for r in rows])
    tok = [abs(r["sim_strong_tokens"] / r["measured_strong_tokens"] - 1) for r in rows if r["measured_strong_tokens"]]
    out = {
        "points": len(rows),
        "inside_measured_ci": int(sum(r["inside_measured_ci"] for r in rows)),
        "max_abs_accuracy_gap": float(np.abs(gaps).max()),
        "mean_accuracy_gap": float(gaps.mean()),
        "mean_abs_rel_strong_token_gap": float(np.mean(tok)),
    }
    for who in ("sim", "measured"):
        if f"{who}_minus_thr_envelope" in rows[0]:
            out[f"mean_{who}_minus_thr_envelope"] = float(np.mean([r[f"{who}_minus_thr_envelope"] for r in rows]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--problems", type=int, default=4000)
    ap.add_argument("--preset", default="qwen1.5b-7b")
    ap.add_argument("--json", type=Path, default=ROOT / "docs" / "img" / "sim_validation.json")
    args = ap.parse_args()
    n, preset = args.problems, args.preset
    reference = json.loads(REFERENCE.read_text())

    thr = []
    for r in track(reference["trim_thr"], "thr"):
        k = round(r["threshold"], 2)
        spec = {0.0: "weak", 1.0: "strong"}.get(k, f"thr:{k}")
        thr.append(row(run(preset, parse_policy(spec), n), r, k=k))
    strong_only = thr[-1]

    models = {"pomdp_heldout": POMDPModel.from_params(load_params(preset)),
              "pomdp_heldout_official_model": POMDPModel.from_params(load_params(OFFICIAL_MODEL))}  # fmt: skip
    pomdp: dict[str, list[dict[str, Any]]] = {name: [] for name in models}
    for r in track(reference["trim_pomdp"], "pomdp"):
        lam = r["cost_per_token"] / 100
        for name, model in models.items():
            policy = POMDPPolicy(solve(model, lam), f"{name}:lam={lam:g}")
            pomdp[name].append(row(run(preset, policy, n), r, lam=lam, cost_per_token=r["cost_per_token"]))

    for rows in pomdp.values():
        add_thr_gap(rows, thr)
    oracle_sim = run(preset, parse_policy("thr:0.5"), n, oracle=True)
    oracle = {
        "sim_accuracy": float(oracle_sim["correct"].mean()),
        "sim_accuracy_ci": half_ci(float(oracle_sim["correct"].mean()), n),
        "sim_strong_tokens": float(oracle_sim["strong"].mean()),
        "sim_strong_calls": float(oracle_sim["calls"].mean()),
    }

    print_table("TRIM-Thr", thr, "k")
    for name, rows in pomdp.items():
        print_table(f"{name} (held out)", rows, "lam")
    print(f"\noracle step router: {100 * oracle['sim_accuracy']:.1f} % at {oracle['sim_strong_tokens']:.1f} strong "
          f"tokens ({oracle['sim_strong_calls']:.2f} calls)")  # fmt: skip
    summary = {"thr": summarise(thr), **{name: summarise(rows) for name, rows in pomdp.items()},
               "strong_only_accuracy_gap": strong_only["sim_accuracy"] - strong_only["measured_accuracy"]}  # fmt: skip
    print("\nsummary:", json.dumps(summary, indent=1))

    args.json.parent.mkdir(parents=True, exist_ok=True)
    doc = {"problems": n, "preset": preset, "summary": summary, "thr": thr, "strong_only": strong_only,
           **pomdp, "oracle": oracle}  # fmt: skip
    args.json.write_text(json.dumps(doc, indent=1) + "\n")
    weak, strong = reference["trim_thr"][0], reference["trim_thr"][-1]
    plot_curves(
        {
            "TRIM-Thr (simulated)": [(r["sim_strong_tokens"], r["sim_accuracy"]) for r in thr],
            "TRIM-Thr (measured, MATH-500)": [(r["measured_strong_tokens"], r["measured_accuracy"]) for r in thr],
            "TRIM-POMDP (simulated, own model)": [(r["sim_strong_tokens"], r["sim_accuracy"]) for r in
                                                  pomdp["pomdp_heldout"]],
            "TRIM-POMDP (simulated, official model)": [(r["sim_strong_tokens"], r["sim_accuracy"]) for r in
                                                       pomdp["pomdp_heldout_official_model"]],
            "TRIM-POMDP (measured, held out)": [(r["measured_strong_tokens"], r["measured_accuracy"]) for r in
                                                pomdp["pomdp_heldout"]],
            "oracle step router (simulated)": [(oracle["sim_strong_tokens"], oracle["sim_accuracy"])],
        },
        ROOT / "docs" / "img" / "sim_thr_vs_pomdp",
        r_weak=weak["accuracy"], r_strong=strong["accuracy"], c_strong=strong["avg_target_tokens_per_question"],
        title=f"{preset}: simulated vs measured (MATH-500, Qwen2.5-1.5B → 7B)",
    )  # fmt: skip


if __name__ == "__main__":
    main()
