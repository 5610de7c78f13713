"""TRIM-POMDP as a pure policy (paper §4.3, DESIGN.md §5).

Each call recomputes the belief over the proposal's hidden state (S0, S1, S2) from the observation history
by Bayes' rule, then reads the action off the solved alpha vectors. A score c_i is observed with its running
min m_i known, so its likelihood is P(c_i | m_i, s) (``POMDPModel.obs_given_min``): multiplying by the joint
P(m_i, c_i | s), as the paper's model does, would count the earlier scores again through m_i. (The solver
plans with the joint, as in the paper; in the simulator the exact update raises the return at every λ
measured, see docs/simulator.md.) Per earlier position i:

* continued: the accepted step was the proposal: posterior ∝ prior ∘ P(c_i | m_i, s), then the weak
  model's next step (CONTINUE matrix);
* regenerated: the proposal's score is gone, but the strong rewrite's score is in the history: the strong
  step's state (STRONG matrix) is observed with o_i, then the weak model's next step.

Specs: ``pomdp:PATH`` (a folder from ``trim pomdp solve``) or ``pomdp:preset=NAME,lam=L`` (solved on the spot).
A preset's observation model describes one scorer (its simulator, or the PRM it was fitted for): the engine
calls ``check_scorer`` before a run, which warns when the run scores with another one.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from trimroute.errors import ConfigError
from trimroute.policies.pomdp_model import POMDPModel, observation_index
from trimroute.policies.pomdp_solver import POMDPSolution, load_solution, solve
from trimroute.types import Action, Observation

__all__ = ["POMDPPolicy", "belief_before", "pomdp_policy"]


def belief_before(model: POMDPModel, obs: Observation) -> np.ndarray:
    """Prior belief over the newest proposal's state given everything before it."""
    belief = model.initial_belief
    running_min = 1.0
    for score, action in zip(obs.scores[:-1], obs.actions, strict=True):
        likelihood = model.obs_given_min[observation_index(running_min, score)]
        if action is Action.REGENERATE:
            belief = model.strong_matrix @ belief
        belief = belief * likelihood
        belief = model.continue_matrix @ (belief / belief.sum())
        running_min = min(running_min, score)
    return belief


@dataclass(frozen=True)
class POMDPPolicy:
    """Decides with a solved TRIM-POMDP. ``source`` is what follows ``pomdp:`` in the spec."""

    solution: POMDPSolution
    source: str
    fixed_action: Action | None = None
    needs_scores: bool = True
    scorers: tuple[str, ...] = ()  # scorers the observation model describes; () = not known, no check

    @property
    def name(self) -> str:
        return f"pomdp:{self.source}"

    def check_scorer(self, scorer: Any) -> None:
        """Warn when ``scorer`` is none of the scorers this policy's observation model was fitted for."""
        parts = [p.lower() for p in _describe(scorer)]
        wanted = [s.lower() for s in self.scorers]
        if wanted and not any(p == s or p.endswith("/" + s) for p in parts for s in wanted):
            warnings.warn(
                f"{self.name}: the observation model was fitted for scorer {' / '.join(self.scorers)}, but this run "
                f"scores with {' '.join(_describe(scorer))!r}; its beliefs assume another score distribution "
                "(fit one for your scorer: trim fit, then pomdp:preset=FILE.json)",
                stacklevel=2,
            )

    def decide(self, obs: Observation) -> Action:
        model = self.solution.model
        likelihood = model.obs_given_min[observation_index(obs.min_prev_score, obs.score)]
        posterior = belief_before(model, obs) * likelihood
        return self.solution.decide(
            posterior / posterior.sum(), obs.step_index + 1, obs.is_final, model.token_bin(obs.tokens)
        )


def _describe(scorer: Any) -> list[str]:
    """A scorer's name and model, through wrappers (a cache keeps the wrapped scorer in ``inner``)."""
    parts = [str(getattr(scorer, "name", "")), str(getattr(getattr(scorer, "config", None), "model", "") or "")]
    inner = getattr(scorer, "inner", None)
    return [p for p in parts if p] + (_describe(inner) if inner is not None else [])


def _keyed(arg: str) -> dict[str, str]:
    out = {}
    for part in arg.split(","):
        key, sep, value = part.partition("=")
        if not sep:
            raise ConfigError(f"pomdp spec part {part!r} must be key=value (e.g. pomdp:preset=qwen1.5b-7b,lam=3e-4)")
        out[key.strip()] = value.strip()
    return out


def pomdp_policy(arg: str | None) -> POMDPPolicy:
    """Registry factory for ``pomdp:PATH`` and ``pomdp:preset=NAME,lam=L[,token_bins=K]``."""
    if not arg:
        raise ConfigError("policy 'pomdp' needs a solved policy folder (pomdp:DIR) or pomdp:preset=NAME,lam=L")
    if Path(arg).is_dir() or "=" not in arg:  # solved folders are named lam=L, hence the is_dir check
        return POMDPPolicy(load_solution(arg), arg)
    from trimroute.sim.presets import load_params

    opts = _keyed(arg)
    unknown = set(opts) - {"preset", "lam", "token_bins"}
    if unknown or "preset" not in opts or "lam" not in opts:
        raise ConfigError(f"pomdp spec takes preset=NAME,lam=L[,token_bins=K]; got {arg!r}")
    try:
        lam, bins = float(opts["lam"]), int(opts.get("token_bins", 4))
    except ValueError:
        raise ConfigError(f"pomdp spec: lam must be a number and token_bins an integer, got {arg!r}") from None
    params = load_params(opts["preset"])
    model = POMDPModel.from_params(params, token_bins=bins)
    scorers = (f"sim:{params.name}", *([params.observation.scorer] if params.observation.scorer else []))
    return POMDPPolicy(solve(model, lam), arg, scorers=scorers)
