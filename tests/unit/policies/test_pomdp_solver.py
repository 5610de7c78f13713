from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from trimroute.errors import ArtifactError, ConfigError
from trimroute.policies.pomdp_model import POMDPModel
from trimroute.policies.pomdp_solver import load_solution, solve
from trimroute.sim.presets import load_params

OBS = np.array([[0.8, 0.3, 0.2], [0.2, 0.7, 0.8]])  # P(o | S0, S1, S2) with two observations


def tiny(hazard: list[float], token_probs: list[float], regen_tokens: list[float]) -> POMDPModel:
    return POMDPModel(
        p_w=0.7, p_s=0.9, obs=OBS, hazard=np.array(hazard),
        token_edges=np.arange(1, len(token_probs), dtype=float) * 10, token_probs=np.array(token_probs),
        regen_tokens=np.array(regen_tokens),
    )  # fmt: skip


def _final_q(m: POMDPModel, u: np.ndarray, cost: float) -> tuple[float, float]:
    return m.reward * u[0], m.reward * m.p_s * (u[0] + u[2]) - cost * u.sum()


def test_solver_matches_brute_force_enumeration_of_all_policies() -> None:
    """T = 2, never final at step 1, always at step 2: a policy maps o1 -> a1 and (o1, a1, o2) -> a2."""
    m, lam = tiny([0.0, 1.0], [1.0], [50.0]), 2e-3
    cost = lam * 50.0
    b1 = m.initial_belief
    best = -np.inf
    for first in itertools.product((0, 1), repeat=2):
        for second in itertools.product((0, 1), repeat=8):
            value = 0.0
            for o1 in range(2):
                u1 = b1 * OBS[o1]  # joint of (state, o1)
                a1 = first[o1]
                prior2 = (m.regenerate_matrix if a1 else m.continue_matrix) @ u1
                value -= a1 * cost * u1.sum()
                for o2 in range(2):
                    u2 = prior2 * OBS[o2]
                    value += _final_q(m, u2, cost)[second[o1 * 4 + a1 * 2 + o2]]
            best = max(best, value)
    assert solve(m, lam).value(b1) == pytest.approx(best, abs=1e-9)


def _exact(m: POMDPModel, lam: float, prior: np.ndarray, t: int) -> float:
    """Optimal value by full expectimax over every history (finals, token bins, observations)."""
    if t > m.horizon:
        return 0.0
    total = 0.0
    h = m.hazard[t - 1]
    for final, pf in ((True, h), (False, 1 - h)):
        for k, pk in enumerate(m.token_probs):
            for o in range(len(m.obs)):
                u = prior * m.obs[o]
                cost = lam * m.regen_tokens[k]
                if final:
                    q = _final_q(m, u, cost)
                else:
                    q = (
                        _exact(m, lam, m.continue_matrix @ u, t + 1),
                        _exact(m, lam, m.regenerate_matrix @ u, t + 1) - cost * u.sum(),
                    )
                total += pf * pk * max(q)
    return total


@pytest.mark.parametrize("lam", [0.0, 1e-3, 4e-3, 2e-2])
def test_solver_matches_exact_search_with_hazard_and_token_bins(lam: float) -> None:
    m = tiny([0.2, 0.5, 1.0], [0.6, 0.4], [30.0, 90.0])
    b1 = m.initial_belief
    assert solve(m, lam).value(b1) == pytest.approx(_exact(m, lam, b1, 1), abs=1e-6)


def test_preset_solve_is_fast_and_the_value_is_a_return(tmp_path: Path) -> None:
    model = POMDPModel.from_params(load_params("qwen1.5b-7b-processbench"))
    cheap, dear = solve(model, 1e-4), solve(model, 1e-2)
    # free-ish regeneration is worth more than weak-only accuracy; very dear cost gives weak-only value
    assert cheap.value(model.initial_belief) > 0.8
    weak_only = float(np.dot(load_params("qwen1.5b-7b-processbench").length_pmf, model.p_w ** np.arange(1, 31)))
    assert dear.value(model.initial_belief) == pytest.approx(weak_only, abs=0.02)
    loaded = load_solution(cheap.save(tmp_path / "pol", {"preset": "qwen1.5b-7b"}))
    assert loaded.value(model.initial_belief) == pytest.approx(cheap.value(model.initial_belief))


def test_bad_inputs_raise_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="λ must be >= 0"):
        solve(tiny([1.0], [1.0], [1.0]), -1.0)
    with pytest.raises(ArtifactError, match="trim pomdp solve"):
        load_solution(tmp_path)
