"""Solve time of TRIM-POMDP for one λ on one core, with the model's sizes.

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python bench/pomdp_solve.py [--preset qwen1.5b-7b] [--lam 3e-4]

Baseline measured in the same run: the same backups at a uniform grid over the whole belief simplex
(resolution 1/30, 496 points) instead of the two reachable segments; the figure is the speed ratio, and the
value difference shows the segments lose nothing.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from trimroute.policies.pomdp_model import POMDPModel
from trimroute.policies.pomdp_solver import segment_beliefs, solve
from trimroute.sim.presets import load_params


def simplex_grid(resolution: int) -> np.ndarray:
    pts = [(i, j, resolution - i - j) for i in range(resolution + 1) for j in range(resolution + 1 - i)]
    return np.array(pts, dtype=float) / resolution


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="qwen1.5b-7b")
    ap.add_argument("--lam", type=float, default=3e-4)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    model = POMDPModel.from_params(load_params(args.preset))
    b1 = model.initial_belief
    times, sol = [], None
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        sol = solve(model, args.lam)
        times.append(time.perf_counter() - t0)
    assert sol is not None
    t0 = time.perf_counter()
    base = solve(model, args.lam, simplex_grid(30))
    base_s = time.perf_counter() - t0
    T, n_k = model.horizon, len(model.token_probs)
    print(f"preset {args.preset}, λ={args.lam:g}")
    print(
        f"hidden states 3 (+terminal) × steps {T} × token bins {n_k} × final flag 2 = {3 * T * n_k * 2} "
        f"augmented states; observations {model.obs.shape[0]} (20×20 bins); actions 2"
    )
    print(f"belief points {len(segment_beliefs(model))} (two segments); alpha vectors {sum(map(len, sol.alphas))}")
    print(f"solve: median {np.median(times):.2f} s over {args.repeats} runs (target < 10 s on one core)")
    print(f"baseline (simplex grid, 496 points): {base_s:.2f} s → ratio {base_s / np.median(times):.1f}× faster")
    print(f"value at b1: segments {sol.value(b1):.6f}, simplex grid {base.value(b1):.6f}")


if __name__ == "__main__":
    main()
