"""The TRIM-POMDP model (paper §4.3, DESIGN.md §5) built from simulator parameters.

Hidden state of the newest proposal: S0 (all steps so far correct), S1 (an earlier step is wrong,
absorbing), S2 (only the current step is wrong, fixable). Observable augmentation: the step index t, whether
the proposal is final (termination hazard h_t), and the bin k of the proposal's token count (it predicts the
cost of a strong rewrite). Observation o = (min previous score, current score) binned 20x20, P(o | s).

Beliefs are vectors over (S0, S1, S2); the matrices act on column vectors (next = M @ u):

* ``CONTINUE``: S0 -> S0 w.p. p_w else S2; S1, S2 -> S1.
* ``STRONG``: the strong rewrite of a step from an S0/S2 prefix is right w.p. p_s (S0) else S2; S1 stays.
* ``REGENERATE`` = CONTINUE @ STRONG: S0 p_s·p_w, S2 p_s·(1-p_w), S1 1-p_s from S0 or S2.

Rewards: R for a final step in S0 (regenerating a final step: p_s·R), -λ·E[strong tokens | k] per
regeneration.

The model is the policy's own: it is built from a simulator preset (``sim.presets``, the world model the
policy plans in), which is why this policy module imports the simulated backend's parameters.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from trimroute.errors import ArtifactError, ConfigError
from trimroute.sim.presets import N_BINS, SimParams, score_bin, step_token_factor

__all__ = ["POMDPModel", "observation_index"]

OBS_FLOOR = 1e-9  # keeps beliefs finite after observations a state's table gives ~0 probability


def observation_index(min_prev_score: float, score: float) -> int:
    """Index of the (min previous score, current score) bin in ``POMDPModel.obs``."""
    if math.isnan(score) or math.isnan(min_prev_score):
        raise ConfigError("the POMDP policy needs step scores; configure a scorer")
    return score_bin(min_prev_score) * N_BINS + score_bin(score)


@dataclass(frozen=True)
class POMDPModel:
    """Arrays of one TRIM-POMDP. ``obs[o, s]`` = P(o | s); ``hazard[t-1]`` = P(step t final)."""

    p_w: float
    p_s: float
    obs: np.ndarray = field(repr=False)
    hazard: np.ndarray = field(repr=False)
    token_edges: np.ndarray = field(repr=False)  # inner edges of the weak-token bins (n_k - 1)
    token_probs: np.ndarray = field(repr=False)  # P(k)
    regen_tokens: np.ndarray = field(repr=False)  # E[strong tokens of the rewrite | weak bin k]
    reward: float = 1.0

    def __post_init__(self) -> None:
        if not (0 < self.p_w <= 1 and 0 < self.p_s <= 1):
            raise ArtifactError(f"POMDP accuracies must be in (0, 1], got p_w={self.p_w}, p_s={self.p_s}")
        if self.obs.ndim != 2 or self.obs.shape[1] != 3 or not np.allclose(self.obs.sum(axis=0), 1.0):
            raise ArtifactError("POMDP observation matrix must be (n_obs, 3) with columns summing to 1")
        if len(self.token_probs) != len(self.regen_tokens) or len(self.token_edges) != len(self.token_probs) - 1:
            raise ArtifactError("POMDP token bins: need n_k probabilities, n_k costs and n_k - 1 edges")

    @cached_property
    def obs_given_min(self) -> np.ndarray:
        """P(c | m, s) per observation bin: the likelihood of a new score when its running min m is known.

        The min of the earlier scores is a function of scores already counted in the belief, so the exact
        Bayes update multiplies by P(c | m, s) = P(m, c | s) / P(m | s), not by the joint P(m, c | s).
        """
        joint = self.obs.reshape(N_BINS, N_BINS, 3)
        return (joint / joint.sum(axis=1, keepdims=True)).reshape(-1, 3)

    @property
    def horizon(self) -> int:
        return len(self.hazard)

    @property
    def continue_matrix(self) -> np.ndarray:
        p = self.p_w
        return np.array([[p, 0, 0], [0, 1, 1], [1 - p, 0, 0]], dtype=float)

    @property
    def strong_matrix(self) -> np.ndarray:
        p = self.p_s
        return np.array([[p, 0, p], [0, 1, 0], [1 - p, 0, 1 - p]], dtype=float)

    @property
    def regenerate_matrix(self) -> np.ndarray:
        return self.continue_matrix @ self.strong_matrix

    @property
    def initial_belief(self) -> np.ndarray:
        """Belief over the first proposal's state (an empty prefix is correct)."""
        return self.continue_matrix @ np.array([1.0, 0.0, 0.0])

    def token_bin(self, tokens: int) -> int:
        return int(np.searchsorted(self.token_edges, tokens, side="right"))

    @classmethod
    def from_params(cls, params: SimParams, token_bins: int = 4, reward: float = 1.0, seed: int = 0) -> POMDPModel:
        """The POMDP of a simulator preset; weak-token bins are quantiles of the weak token distribution.

        The paper's model has no per-problem difficulty, recovery or longer wrong steps: a preset with them
        gives its effective (difficulty-averaged) next-step accuracies, and token counts scaled to each
        model's mean tokens per step when it writes alone (what strong-only and weak-only runs measure).
        """
        if token_bins < 1:
            raise ConfigError(f"token_bins must be >= 1, got {token_bins}")
        obs = params.observation.probs.reshape(3, -1).T + OBS_FLOOR
        w, s, rho = params.weak, params.strong, params.token_corr
        # E[strong tokens | weak bin] under the simulator's correlated log-normals, by Monte Carlo
        rng = np.random.default_rng(seed)
        z, e_w, e_s = rng.standard_normal((3, 200_000))
        a = math.sqrt(abs(rho))
        weak = np.exp(w.token_log_mean + w.token_log_sd * (a * z + math.sqrt(1 - abs(rho)) * e_w))
        strong = np.exp(s.token_log_mean + s.token_log_sd * (math.copysign(a, rho) * z + math.sqrt(1 - abs(rho)) * e_s))
        weak, strong = weak * step_token_factor(params, "weak"), strong * step_token_factor(params, "strong")
        edges = np.quantile(weak, np.arange(1, token_bins) / token_bins)
        k = np.searchsorted(edges, weak, side="right")
        return cls(
            p_w=params.effective_accuracy("weak"),
            p_s=params.effective_accuracy("strong"),
            obs=obs / obs.sum(axis=0),
            hazard=params.hazard,
            token_edges=edges,
            token_probs=np.bincount(k, minlength=token_bins) / k.size,
            regen_tokens=np.array([strong[k == j].mean() for j in range(token_bins)]),
            reward=reward,
        )

    def arrays(self) -> dict[str, np.ndarray]:
        return {
            "p": np.array([self.p_w, self.p_s, self.reward]),
            "obs": self.obs,
            "hazard": self.hazard,
            "token_edges": self.token_edges,
            "token_probs": self.token_probs,
            "regen_tokens": self.regen_tokens,
        }

    @classmethod
    def from_arrays(cls, a: dict[str, np.ndarray]) -> POMDPModel:
        p_w, p_s, reward = (float(x) for x in a["p"])
        return cls(
            p_w=p_w,
            p_s=p_s,
            reward=reward,
            obs=a["obs"],
            hazard=a["hazard"],
            token_edges=a["token_edges"],
            token_probs=a["token_probs"],
            regen_tokens=a["regen_tokens"],
        )
