"""A calibrated simulator of step-level routing that plugs into the one ``Engine`` (DESIGN.md §3).

No second routing loop: the simulator is a Generator + Scorer pair. The hidden state of a trajectory
(TRIM-POMDP's S0 all correct / S1 an earlier step wrong / S2 only the current step wrong, paper §4.3)
is written into each simulated step's text, e.g. ``[sim weak S0 qhtkzwab]``, so it is a pure function
of the pre-fill the engine sends:

* ``SimGenerator`` (one per role) reads the last accepted step's state from the pre-fill; from S0 the
  new step is correct with the role's next-step accuracy on this problem (→ S0, else S2); after an error
  every step is S1, except that a strong step recovers (→ S0) with the preset's ``recovery``. Each
  problem has a latent difficulty z (a hash of its text) shared by both roles: accuracy
  sigmoid(logit(p) - difficulty_sd·z). Whether the step at position t ends the solution is drawn per
  (problem, t) with the writer's termination hazard, one uniform for both roles, so a weak proposal and
  its strong rewrite mostly agree; the final step says ``\\boxed{correct}`` in S0, else
  ``\\boxed{wrong}`` (simulated problems have answer "correct", so ordinary grading works). Step tokens
  are log-normal, correlated between the roles at one position through a per-(problem, t) latent, and
  ``wrong_token_factor`` times longer for a wrong step.
* ``SimScorer`` scores each step by drawing the current score from P(c | m, s) — the calibrated
  P(o | s) table conditioned on the bin of the running min m of the earlier steps' scores — seeded by
  the step's text, so re-scoring the history returns the same scores and ``min(scores[:-1])`` is the
  real running min. With ``oracle=True`` it reads the hidden state instead: 0 for a fixable wrong step
  (S2), 1 otherwise, so ``thr:0.5`` is the oracle step router that regenerates exactly the first wrong
  step (and only it) of every solution: the limit of any scorer and policy.

Per-call randomness comes from the request's seed (``call_seed``: a hash of the prompt), so runs are
reproducible and policies that reach the same prefix see the same draws (common random numbers).
"""

from __future__ import annotations

import bisect
import hashlib
import math
import os
from collections.abc import Sequence
from statistics import NormalDist
from typing import TYPE_CHECKING

import numpy as np

from trimroute.errors import ConfigError
from trimroute.sim.presets import N_BINS, STATES, SimParams, load_params, score_bin
from trimroute.types import FinishReason, Generation, Problem, Scores, Step, StepRequest, Trajectory

if TYPE_CHECKING:
    from trimroute.config import BackendConfig, ScorerConfig

__all__ = [
    "SimGenerator",
    "SimScorer",
    "build_sim_generator",
    "build_sim_scorer",
    "hidden_state",
    "is_sim_correct",
    "simulated_problems",
]

_TAG = "[sim "
_LETTERS = "abcdefghijklmnopqrstuvwxyz"
_NORMAL = NormalDist()
CORRECT, WRONG = "correct", "wrong"


def _uniforms(key: bytes, n: int) -> list[float]:
    """``n`` uniforms in (0, 1) from a hash (4 bytes each)."""
    d = hashlib.blake2b(key, digest_size=4 * n).digest()
    return [(int.from_bytes(d[4 * i : 4 * i + 4], "little") + 0.5) / 2**32 for i in range(n)]


def hidden_state(step_text: str) -> str | None:
    """The hidden state (S0/S1/S2) written in a simulated step, or None for a non-simulated step."""
    i = step_text.rfind(_TAG)
    if i < 0:
        return None
    return step_text[i + len(_TAG) :].split(" ", 2)[1]


def simulated_problems(n: int, seed: int = 0) -> list[Problem]:
    """``n`` simulated problems; their text keys the per-problem draws (solution length, step tokens)."""
    return [
        Problem(id=f"sim-{seed}-{i}", text=f"Simulated problem {i} of set {seed}.", answer=CORRECT) for i in range(n)
    ]


def is_sim_correct(trajectory: Trajectory) -> bool:
    """Grading of a simulated trajectory without the answer verifier (same verdict, no sympy)."""
    return trajectory.final_answer == CORRECT


class SimGenerator:
    """The weak or strong model of a preset (see the module docstring)."""

    def __init__(self, params: SimParams, role: str) -> None:
        if role not in ("weak", "strong"):
            raise ConfigError(f"simulated generator role must be 'weak' or 'strong', got {role!r}")
        self.params = params
        self.role = role
        stats = params.weak if role == "weak" else params.strong
        self.model = f"sim:{params.name}:{stats.name}"
        self._p = stats.next_step_accuracy
        self._logit = math.log(self._p / (1 - self._p)) if self._p < 1 else math.inf
        self._mu, self._sd = stats.token_log_mean, stats.token_log_sd
        self._wrong_shift = math.log(params.wrong_token_factor)
        self._recovery = params.recovery if role == "strong" else 0.0
        rho = params.token_corr
        # both roles load sqrt(|rho|) on the shared latent, so corr(log weak, log strong) = rho
        self._shared = math.copysign(math.sqrt(abs(rho)), rho) if role == "strong" else math.sqrt(abs(rho))
        self._own = math.sqrt(1.0 - abs(rho))
        self._hazard = [float(h) for h in (params.hazard if role == "weak" else params.strong_hazard)]

    def _accuracy(self, problem: str) -> float:
        """Next-step accuracy on this problem (its latent difficulty is a hash of the text)."""
        sd = self.params.difficulty_sd
        if sd == 0 or self._p >= 1:
            return self._p
        z = _NORMAL.inv_cdf(_uniforms(f"{problem}\x00difficulty".encode(), 1)[0])
        return 1.0 / (1.0 + math.exp(sd * z - self._logit))

    async def generate_step(self, request: StepRequest) -> Generation:
        prefill = request.prefill
        position = request.n_steps + 1  # 1-based
        tag = prefill.rfind(_TAG)
        before = prefill[tag + len(_TAG) :].split(" ", 2)[1] if tag >= 0 else "S0"
        problem = request.messages[0].content
        # call_seed already covers the whole prompt; the problem is mixed in as well (redundant, kept so the
        # draws behind the results in docs/ stay reproducible)
        seed = request.seed if request.seed is not None else int.from_bytes(os.urandom(4), "little")
        u_ok, u_tok, u_nonce = _uniforms(f"{seed}\x00{problem}".encode(), 3)
        u_final, u_latent = _uniforms(f"{problem}\x00{position}".encode(), 2)

        if before == "S0":
            state = "S0" if u_ok < self._accuracy(problem) else "S2"
        else:  # the recovery draw reuses u_ok: from a wrong prefix nothing else depends on it
            state = "S0" if u_ok < self._recovery else "S1"
        z = self._shared * _NORMAL.inv_cdf(u_latent) + self._own * _NORMAL.inv_cdf(u_tok)
        shift = 0.0 if state == "S0" else self._wrong_shift
        tokens = max(1, round(math.exp(self._mu + shift + self._sd * z)))
        final = u_final < self._hazard[min(position, len(self._hazard)) - 1]
        nonce = "".join(_LETTERS[int(u_nonce * 26**k) % 26] for k in range(1, 9))
        text = f"{_TAG}{self.role} {state} {nonce}]"
        finish = FinishReason.STOP
        if tokens > request.max_tokens:
            tokens, finish = request.max_tokens, FinishReason.LENGTH
        elif final:
            text += f" The answer is \\boxed{{{CORRECT if state == 'S0' else WRONG}}}."
        return Generation(
            text=text,
            prompt_tokens=len(prefill) // 4,
            generated_tokens=tokens,
            finish_reason=finish,
            token_logprobs=(-0.5,) * tokens if request.logprobs else None,
        )

    async def aclose(self) -> None:
        return None


class SimScorer:
    """A step scorer whose scores follow the preset's calibrated P(o | s), or the oracle's (module docstring)."""

    def __init__(self, params: SimParams, oracle: bool = False) -> None:
        self.params = params
        self.oracle = oracle
        self.name = f"sim:{params.name}" + (":oracle" if oracle else "")
        # cdf[state][m_bin] = cumulative P(c_bin | m_bin, state)
        cdf = np.cumsum(params.observation.conditional, axis=2)
        cdf[..., -1] = 1.0
        self._cdf = {state: cdf[k].tolist() for k, state in enumerate(STATES)}

    def _score(self, problem_id: str, position: int, text: str, running_min: float) -> float:
        state = hidden_state(text)
        if state is None:
            raise ConfigError("the simulated scorer only scores simulated steps; use a sim generator too")
        if self.oracle:
            return 0.0 if state == "S2" else 1.0
        u_bin, u_in = _uniforms(f"{problem_id}\x00{position}\x00{text}".encode(), 2)
        c = bisect.bisect_left(self._cdf[state][score_bin(running_min)], u_bin)
        return (min(c, N_BINS - 1) + u_in) / N_BINS

    async def score(self, problem: Problem, steps: Sequence[Step]) -> Scores:
        values, running_min = [], 1.0
        for i, step in enumerate(steps):
            s = self._score(problem.id, i, step.text, running_min)
            values.append(s)
            running_min = min(running_min, s)
        return Scores(tuple(values), prompt_tokens=sum(s.generated_tokens for s in steps))

    async def aclose(self) -> None:
        return None


def _preset_option(options: dict[str, object], what: str) -> SimParams:
    preset = options.get("preset")
    if not isinstance(preset, str):
        raise ConfigError(f"the sim {what} needs options.preset (a preset name or a .json file)")
    return load_params(preset)


def build_sim_generator(config: BackendConfig) -> SimGenerator:
    """Registry factory: ``{kind: sim, options: {preset: qwen1.5b-7b, role: weak}}``."""
    role = config.options.get("role")
    if role not in ("weak", "strong"):
        raise ConfigError(f"the sim generator needs options.role = weak or strong, got {role!r}")
    return SimGenerator(_preset_option(dict(config.options), "generator"), str(role))


def build_sim_scorer(config: ScorerConfig) -> SimScorer:
    """Registry factory: ``{kind: sim, options: {preset: qwen1.5b-7b, oracle: false}}``."""
    return SimScorer(_preset_option(dict(config.options), "scorer"), oracle=bool(config.options.get("oracle", False)))
