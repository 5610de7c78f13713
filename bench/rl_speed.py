"""Speed of RL training for TRIM-Agg / TRIM-Seq: environment steps per second and PPO training time.

Measured in one run, so the figures compare as ratios:

- sim: the routing environment alone (random actions, ``--n-envs`` problems in flight) is the baseline;
  PPO training (agg and seq, the paper's hyperparameters) is reported as steps/s and as a share of it.
- live: the same environment against a real llama.cpp server (SmolLM2-135M, confidence scorer, short
  steps) with 1 and with ``--n-envs`` problems in flight (the ratio is what concurrency buys).

    python bench/rl_speed.py --sim-steps 20000 --live-steps 40 --out bench/rl_speed.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trimroute.config import load_run_config
from trimroute.data.datasets import load_dataset
from trimroute.data.grading import grade_trajectory
from trimroute.engine import Engine
from trimroute.learn.env import RoutingVecEnv
from trimroute.learn.train import PPOConfig, TrainConfig, simulated_setup, train_policy
from trimroute.policies.features import feature_set
from trimroute.runner import build_engine, simulated_engine
from trimroute.sim.backend import is_sim_correct, simulated_problems
from trimroute.testing.llama_server import LlamaServer, smollm2_path
from trimroute.types import Problem, Trajectory

GSM8K = Path(__file__).resolve().parents[2] / "shared" / "data" / "gsm8k_test.jsonl"


def env_rate(
    engine: Engine, problems: list[Problem], grade: Callable[[Trajectory], bool], features: str, n_envs: int, steps: int
) -> dict[str, float]:
    """Random-action environment steps per second (the engine and models only, no learning)."""
    env = RoutingVecEnv(engine, problems, feature_set(features), 1e-3, grade, n_envs=n_envs)
    rng = np.random.default_rng(0)
    try:
        t0 = time.perf_counter()
        env.reset()
        done, episodes = 0, 0
        while done < steps:
            _, _, dones, _ = env.step(rng.integers(0, 2, size=n_envs))
            done += n_envs
            episodes += int(dones.sum())
        wall = time.perf_counter() - t0
    finally:
        env.close()
    return {"steps": done, "episodes": episodes, "wall_s": wall, "steps_per_s": done / wall}


def train_rate(kind: str, preset: str, n_envs: int, steps: int) -> dict[str, float]:
    """PPO training (rollouts + updates + one validation of 200 problems) in the simulator."""
    setup = simulated_setup(preset, train_problems=2000, val_problems=200, seed=0)  # what trim train uses
    config = TrainConfig(kind, lam=2e-3, steps=steps, n_envs=n_envs, eval_every=steps, ppo=PPOConfig())  # type: ignore[arg-type]
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        best = train_policy(setup, config, Path(out))
        wall = time.perf_counter() - t0
    done = best["timesteps"]  # whole PPO rollouts: at least ``steps``
    return {"steps": done, "wall_s": wall, "steps_per_s": done / wall}


def live(steps: int, n_envs: int) -> dict[str, Any]:
    server = LlamaServer(smollm2_path(), n_threads=1)
    server.start()
    try:
        overrides = {
            f"{role}.{k}": v
            for role in ("weak", "strong")
            for k, v in (("base_url", server.base_url), ("model", server.model))
        }
        overrides |= {
            "engine.max_steps": 3,
            "engine.max_step_tokens": 16,
            "engine.weak_logprobs": True,
            "scorer.kind": "confidence",
        }
        config = load_run_config(None, overrides)
        problems = load_dataset(str(GSM8K), limit=50)

        def grade(t: Trajectory) -> bool:
            return bool(grade_trajectory(t).correct)

        out = {}
        for n in (1, n_envs):
            out[f"n_envs={n}"] = env_rate(build_engine(config), problems, grade, "official", n, steps)
        out["concurrency_speedup"] = out[f"n_envs={n_envs}"]["steps_per_s"] / out["n_envs=1"]["steps_per_s"]
        return out
    finally:
        server.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="qwen1.5b-7b")
    ap.add_argument("--n-envs", type=int, default=16)
    ap.add_argument("--sim-steps", type=int, default=20_000)
    ap.add_argument("--live-steps", type=int, default=40)
    ap.add_argument("--live-n-envs", type=int, default=4)
    ap.add_argument("--skip-live", action="store_true")
    ap.add_argument("--out", default="bench/rl_speed.json")
    args = ap.parse_args()
    torch.set_num_threads(1)

    problems = simulated_problems(2000, seed=1000)
    report: dict[str, Any] = {"preset": args.preset, "n_envs": args.n_envs, "torch_threads": 1}
    for features in ("official", "seq"):
        report[f"sim_env_{features}"] = env_rate(
            simulated_engine(args.preset), problems, is_sim_correct, features, args.n_envs, args.sim_steps
        )
    for kind, features in (("agg", "official"), ("seq", "seq")):
        result = train_rate(kind, args.preset, args.n_envs, args.sim_steps)
        result["share_of_env_rate"] = result["steps_per_s"] / report[f"sim_env_{features}"]["steps_per_s"]
        report[f"sim_train_{kind}"] = result
    if not args.skip_live:
        report["live_env_smollm2"] = live(args.live_steps, args.live_n_envs)
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
