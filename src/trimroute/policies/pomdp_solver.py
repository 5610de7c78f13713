"""A fast finite-horizon point-based solver for TRIM-POMDP (paper §4.3), in numpy.

The official release ran SARSOP (Julia) once per belief point. Here one backward pass over the step index
t = T..1 builds the whole policy for one λ: at stage t the value of a prior belief b (before seeing the
proposal) is a max of alpha vectors, W_t(b) = max_α α·b, and each point-based backup is exact at its point.

Why it is fast: every reachable prior lies on one of two segments — after a continue, C @ u is a mix of
C @ e0 and e1; after a regeneration, G @ u is a mix of G @ e0 and e1 — so backing up at a few hundred points
on those segments covers every belief the policy can meet. And the values of continuing (α·C u) and of
regenerating (α·G u) depend on the posterior only through one ratio, so the next stage's alpha vectors are
first pruned to the lines of a 1-D upper envelope.

The result, ``POMDPSolution``, is saved as a folder: ``config.json`` + ``arrays.npz`` (no pickle).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np

from trimroute.errors import ArtifactError, ConfigError
from trimroute.policies.pomdp_model import POMDPModel
from trimroute.types import Action

__all__ = ["POMDPSolution", "load_solution", "segment_beliefs", "solve"]

FORMAT = "trimroute.pomdp/1"


def segment_beliefs(model: POMDPModel, points: int = 50) -> np.ndarray:
    """Prior beliefs on the two reachable segments (towards S1 from C @ e0 and from G @ e0)."""
    a = np.unique(np.concatenate([np.linspace(0.0, 1.0, points), np.geomspace(1e-6, 0.05, points // 4)]))
    e1 = np.array([0.0, 1.0, 0.0])
    ends = (model.initial_belief, model.regenerate_matrix[:, 0])
    return np.concatenate([(1 - a)[:, None] * end[None, :] + a[:, None] * e1[None, :] for end in ends])


def _envelope(lines: np.ndarray, left: np.ndarray, right: np.ndarray, grid: int = 513) -> np.ndarray:
    """Rows of ``lines`` that are maximal somewhere on the segment between ``left`` and ``right`` beliefs."""
    q = np.linspace(0.0, 1.0, grid)[:, None]
    values = (q * left + (1 - q) * right) @ lines.T
    return lines[np.unique(values.argmax(axis=1))]


@dataclass(frozen=True)
class POMDPSolution:
    """Alpha vectors per stage: ``alphas[t-1]`` represents W_t for t = 1..T+1 (W_{T+1} = 0)."""

    model: POMDPModel
    lam: float
    alphas: tuple[np.ndarray, ...]
    solve_seconds: float = 0.0

    def value(self, belief: np.ndarray, t: int = 1) -> float:
        """Expected return (R·correct − λ·strong tokens) from stage t with prior ``belief``."""
        return float(np.max(self.alphas[t - 1] @ belief))

    def q_values(self, posterior: np.ndarray, t: int, final: bool, token_bin: int) -> tuple[float, float]:
        """(continue, regenerate) values of a normalised posterior over the proposal's state at step t."""
        m = self.model
        cost = self.lam * m.regen_tokens[token_bin]
        if final:
            return m.reward * posterior[0], m.reward * m.p_s * (posterior[0] + posterior[2]) - cost
        nxt = self.alphas[min(t, len(self.alphas) - 1)]  # W_{t+1}
        cont = float(np.max(nxt @ (m.continue_matrix @ posterior)))
        regen = float(np.max(nxt @ (m.regenerate_matrix @ posterior))) - cost
        return cont, regen

    def decide(self, posterior: np.ndarray, t: int, final: bool, token_bin: int) -> Action:
        if t > self.model.horizon:
            return Action.CONTINUE
        cont, regen = self.q_values(posterior, t, final, token_bin)
        return Action.REGENERATE if regen > cont else Action.CONTINUE

    def save(self, out: str | Path, extra: dict[str, Any] | None = None) -> Path:
        """Write ``out/config.json`` and ``out/arrays.npz``."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        counts = np.array([len(a) for a in self.alphas])
        padded = np.zeros((len(self.alphas), counts.max(), 3))
        for i, a in enumerate(self.alphas):
            padded[i, : len(a)] = a
        arrays = {"alphas": padded, "alpha_counts": counts, **self.model.arrays()}
        np.savez(out / "arrays.npz", **arrays)  # type: ignore[arg-type]  # numpy stubs mistype **kwds
        config = {
            "format": FORMAT,
            "trimroute_version": version("trimroute"),
            "lam": self.lam,
            "horizon": self.model.horizon,
            "n_observations": int(self.model.obs.shape[0]),
            "n_token_bins": len(self.model.token_probs),
            "alpha_vectors": int(counts.sum()),
            "solve_seconds": round(self.solve_seconds, 3),
            **(extra or {}),
        }
        (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        return out


def load_solution(path: str | Path) -> POMDPSolution:
    """Load a solution folder written by ``POMDPSolution.save`` (or ``trim pomdp solve``)."""
    path = Path(path)
    try:
        config = json.loads((path / "config.json").read_text())
        with np.load(path / "arrays.npz", allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except (OSError, json.JSONDecodeError, ValueError) as e:
        raise ArtifactError(
            f"cannot load POMDP policy from {str(path)!r}: {e}; create it with trim pomdp solve"
        ) from None
    if config.get("format") != FORMAT:
        raise ArtifactError(f"{path}: not a POMDP policy (format {config.get('format')!r}, expected {FORMAT!r})")
    counts = arrays.pop("alpha_counts")
    padded = arrays.pop("alphas")
    return POMDPSolution(
        model=POMDPModel.from_arrays(arrays),
        lam=float(config["lam"]),
        alphas=tuple(padded[i, :n] for i, n in enumerate(counts)),
        solve_seconds=float(config.get("solve_seconds", 0.0)),
    )


def solve(model: POMDPModel, lam: float, beliefs: np.ndarray | None = None) -> POMDPSolution:
    """Backward induction over t = T..1 with point-based backups at ``beliefs`` (default: the segments)."""
    if lam < 0:
        raise ConfigError(f"λ must be >= 0 (price of one strong token), got {lam}")
    t0 = time.perf_counter()
    B = segment_beliefs(model) if beliefs is None else np.asarray(beliefs, dtype=float)
    obs, R, P, cost = model.obs, model.reward, model.token_probs, lam * model.regen_tokens
    C, G = model.continue_matrix, model.regenerate_matrix
    e0, e1, s1 = np.eye(3)[0], np.eye(3)[1], np.array([1.0, 0.0, 1.0])
    U = B[:, None, :] * obs[None, :, :]  # unnormalised posteriors, (beliefs, observations, states)
    mass = U.sum(axis=-1)

    # final proposals: the choice per (b, o, k) does not depend on the future
    cont_f = R * U[..., 0]
    regen_f = R * model.p_s * (U[..., 0] + U[..., 2])
    reg_f = regen_f[..., None] - cost * mass[..., None] > cont_f[..., None]  # (b, o, k)
    w_reg_f = reg_f @ P
    vec_f = (
        (1 - w_reg_f)[..., None] * R * e0 + w_reg_f[..., None] * R * model.p_s * s1 - (reg_f @ (P * cost))[..., None]
    )

    alphas = [np.zeros((1, 3))]  # W_{T+1} = 0: past the last step nothing more is earned
    for t in range(model.horizon, 0, -1):
        h = model.hazard[t - 1]
        nxt = alphas[-1]
        vc = _envelope(nxt @ C, e0, e1)  # lines of the continue value, as functions of the posterior
        vg = _envelope(nxt @ G, s1 / 2, e1)
        sc, sg = U @ vc.T, U @ vg.T
        best_c, best_g = sc.max(axis=-1), sg.max(axis=-1)
        reg = best_g[..., None] - cost * mass[..., None] > best_c[..., None]
        w_reg = reg @ P
        vec_n = (
            (1 - w_reg)[..., None] * vc[sc.argmax(axis=-1)]
            + w_reg[..., None] * vg[sg.argmax(axis=-1)]
            - (reg @ (P * cost))[..., None]
        )
        new = np.einsum("os,bos->bs", obs, h * vec_f + (1 - h) * vec_n)
        alphas.append(np.unique(np.round(new, 12), axis=0))
    return POMDPSolution(model=model, lam=lam, alphas=tuple(reversed(alphas)), solve_seconds=time.perf_counter() - t0)
