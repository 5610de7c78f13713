"""Simulator parameters (``SimParams``) and the calibrated presets shipped with the package.

A preset is (weak model, strong model, observation model); the package ships its parts as small JSON
files under ``trimroute/presets/`` (fitted from ``../shared/calibration`` by ``learn.fit``, sources
cited inside each file). ``load_params`` takes a preset name or the path of a self-contained
``SimParams`` JSON file (what ``trim fit`` writes)::

    from trimroute.sim.presets import load_params, preset_names
    params = load_params("qwen1.5b-7b")       # Qwen2.5-1.5B -> Qwen2.5-7B, PRM on MATH-train
    params.weak.next_step_accuracy            # 0.866

This module and ``SimParams`` are a stable interface (the RL trainer and the POMDP solver use them).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from numpy.polynomial.hermite_e import hermegauss
from scipy import optimize

from trimroute.errors import ArtifactError, ConfigError

__all__ = [
    "STATES",
    "ModelStats",
    "ObservationModel",
    "SimParams",
    "load_params",
    "one_role_run",
    "preset_names",
    "step_token_factor",
]

STATES = ("S0", "S1", "S2")  # all correct so far / an earlier step wrong / only the current step wrong
N_BINS = 20  # observation bins per axis (width 0.05), as in the calibration data
DIFFICULTY_NODES = 24  # Gauss-Hermite nodes for expectations over the per-problem difficulty


@dataclass(frozen=True)
class ModelStats:
    """One model's step statistics: next-step accuracy and a log-normal step token distribution."""

    name: str
    next_step_accuracy: float
    token_log_mean: float
    token_log_sd: float

    def __post_init__(self) -> None:
        if not 0.0 < self.next_step_accuracy <= 1.0:
            raise ConfigError(f"{self.name}: next_step_accuracy must be in (0, 1], got {self.next_step_accuracy}")
        if self.token_log_sd < 0:
            raise ConfigError(f"{self.name}: token_log_sd must be >= 0, got {self.token_log_sd}")

    @property
    def mean_tokens(self) -> float:
        return math.exp(self.token_log_mean + self.token_log_sd**2 / 2)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "next_step_accuracy": self.next_step_accuracy,
            "token_log_mean": self.token_log_mean,
            "token_log_sd": self.token_log_sd,
        }


@dataclass(frozen=True)
class ObservationModel:
    """P(o | s): ``probs[s, m, c]`` over 20x20 bins of (min previous score m, current score c).

    ``scorer`` names the step scorer whose scores it describes (e.g. Qwen2.5-Math-PRM-7B); "" if unknown.
    """

    name: str
    probs: np.ndarray = field(repr=False)  # shape (3, N_BINS, N_BINS), each state sums to 1
    scorer: str = ""

    def __post_init__(self) -> None:
        p = np.asarray(self.probs, dtype=float)
        if p.shape != (3, N_BINS, N_BINS) or not np.all(p >= 0):
            raise ArtifactError(f"observation model {self.name!r}: probs must be 3x{N_BINS}x{N_BINS}, >= 0")
        if not np.allclose(p.sum(axis=(1, 2)), 1.0, atol=1e-6):
            raise ArtifactError(f"observation model {self.name!r}: each state's probabilities must sum to 1")
        object.__setattr__(self, "probs", p)

    @property
    def conditional(self) -> np.ndarray:
        """P(c | m, s) as ``[s, m, c]``; a row without mass falls back to the state's marginal of c."""
        marginal = self.probs.sum(axis=1, keepdims=True)
        rows = self.probs.sum(axis=2, keepdims=True)
        table = np.where(rows > 1e-12, self.probs, marginal)
        return table / table.sum(axis=2, keepdims=True)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "scorer": self.scorer,
            "bin_size": 1.0 / N_BINS,
            "layout": "probs[state][m_bin][c_bin]; states S0, S1, S2",
            "probs": np.round(self.probs, 12).tolist(),
        }


def score_bin(x: float) -> int:
    """Observation bin (0..19) of a score in [0, 1]."""
    return min(max(int(x * N_BINS), 0), N_BINS - 1)


@dataclass(frozen=True)
class SimParams:
    """Everything the simulator and the POMDP need.

    ``length_pmf[l-1]`` = P(a weak-only solution has l steps), l = 1..max_steps; ``strong_length_pmf`` the
    same for the strong model (None: the weak one's); the per-step termination hazards are derived from them.
    ``token_corr`` is the correlation of a position's weak and strong log token counts (a long weak step
    predicts a long strong rewrite). The next three default to the plain model (every problem alike):

    * ``difficulty_sd``: sd of a per-problem latent z ~ N(0, 1) shared by both models; a problem's next-step
      accuracy is sigmoid(logit(p) - difficulty_sd·z), so ``next_step_accuracy`` is the median problem's.
    * ``wrong_token_factor``: a wrong step (S1/S2) has this many times the tokens of a correct one.
    * ``recovery``: P(a strong step written after an earlier error puts the solution right again).
    """

    name: str
    weak: ModelStats
    strong: ModelStats
    observation: ObservationModel
    length_pmf: tuple[float, ...]
    token_corr: float = 0.5
    sources: dict[str, str] = field(default_factory=dict)
    strong_length_pmf: tuple[float, ...] | None = None
    difficulty_sd: float = 0.0
    wrong_token_factor: float = 1.0
    recovery: float = 0.0

    def __post_init__(self) -> None:
        for key, pmf in (("length_pmf", self.length_pmf), ("strong_length_pmf", self.strong_length_pmf)):
            a = np.asarray(pmf if pmf is not None else self.length_pmf, dtype=float)
            proper = a.ndim == 1 and len(a) == len(self.length_pmf) and np.all(a >= 0)
            if not proper or not math.isclose(a.sum(), 1.0, abs_tol=1e-6):
                raise ArtifactError(f"preset {self.name!r}: {key} must be non-negative, sum to 1, one entry per step")
        if not -1.0 <= self.token_corr <= 1.0:
            raise ArtifactError(f"preset {self.name!r}: token_corr must be in [-1, 1], got {self.token_corr}")
        if self.difficulty_sd < 0 or self.wrong_token_factor <= 0 or not 0.0 <= self.recovery <= 1.0:
            raise ArtifactError(
                f"preset {self.name!r}: need difficulty_sd >= 0, wrong_token_factor > 0 and recovery in [0, 1]"
            )

    @property
    def max_steps(self) -> int:
        return len(self.length_pmf)

    @property
    def strong_pmf(self) -> tuple[float, ...]:
        """The strong model's length distribution (the weak one's unless given)."""
        return self.strong_length_pmf or self.length_pmf

    @property
    def hazard(self) -> np.ndarray:
        """The weak model's h[t-1] = P(step t is final | the solution reached step t); h[-1] = 1."""
        return _hazard(self.length_pmf)

    @property
    def strong_hazard(self) -> np.ndarray:
        """The strong model's termination hazard."""
        return _hazard(self.strong_pmf)

    def accuracy_at(self, z: np.ndarray, role: str) -> np.ndarray:
        """Next-step accuracy of ``role`` on problems of latent difficulty ``z``."""
        p = (self.weak if role == "weak" else self.strong).next_step_accuracy
        if p >= 1.0:
            return np.ones_like(z, dtype=float)
        return 1.0 / (1.0 + np.exp(-(math.log(p / (1 - p)) - self.difficulty_sd * np.asarray(z, dtype=float))))

    def effective_accuracy(self, role: str) -> float:
        """The one next-step accuracy that gives ``role`` alone the same expected accuracy on every problem
        alike (what a model without difficulty, such as the POMDP's, should use)."""
        stats = self.weak if role == "weak" else self.strong
        if self.difficulty_sd == 0:
            return stats.next_step_accuracy
        z, w = hermegauss(DIFFICULTY_NODES)
        pmf = np.asarray(self.length_pmf if role == "weak" else self.strong_pmf)
        powers = np.arange(1, len(pmf) + 1)
        target = float(w @ (self.accuracy_at(z, role)[:, None] ** powers) @ pmf) / float(w.sum())
        return float(optimize.brentq(lambda p: float(pmf @ p**powers) - target, 1e-9, 1.0))

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": "trimroute.sim_params/1",
            "name": self.name,
            "weak": self.weak.to_dict(),
            "strong": self.strong.to_dict(),
            "observation": self.observation.to_dict(),
            "length_pmf": [round(x, 12) for x in self.length_pmf],
            "token_corr": self.token_corr,
            "strong_length_pmf": None if self.strong_length_pmf is None else [round(x, 12) for x in self.strong_pmf],
            "difficulty_sd": self.difficulty_sd,
            "wrong_token_factor": self.wrong_token_factor,
            "recovery": self.recovery,
            "sources": dict(self.sources),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SimParams:
        try:
            return cls(
                name=d["name"],
                weak=ModelStats(**d["weak"]),
                strong=ModelStats(**d["strong"]),
                observation=_observation(d["observation"]),
                length_pmf=tuple(float(x) for x in d["length_pmf"]),
                token_corr=float(d.get("token_corr", 0.5)),
                sources=dict(d.get("sources", {})),
                strong_length_pmf=None if d.get("strong_length_pmf") is None else tuple(d["strong_length_pmf"]),
                difficulty_sd=float(d.get("difficulty_sd", 0.0)),
                wrong_token_factor=float(d.get("wrong_token_factor", 1.0)),
                recovery=float(d.get("recovery", 0.0)),
            )
        except (KeyError, TypeError) as e:
            raise ArtifactError(f"not a simulator parameter file (missing or bad field {e})") from None

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1) + "\n")


def _hazard(length_pmf: tuple[float, ...]) -> np.ndarray:
    pmf = np.asarray(length_pmf, dtype=float)
    survive = 1.0 - np.concatenate([[0.0], np.cumsum(pmf)[:-1]])
    h = np.divide(pmf, survive, out=np.ones_like(pmf), where=survive > 1e-12)
    h[-1] = 1.0
    return np.clip(h, 0.0, 1.0)


def _observation(d: dict[str, Any]) -> ObservationModel:
    return ObservationModel(name=d["name"], probs=np.asarray(d["probs"], dtype=float), scorer=d.get("scorer", ""))


def _read_preset_file(name: str) -> dict[str, Any]:
    text = resources.files("trimroute").joinpath("presets", name).read_text()
    return json.loads(text)


@cache
def _catalogue() -> dict[str, Any]:
    return _read_preset_file("presets.json")


def preset_names() -> list[str]:
    """Names of the shipped presets."""
    return sorted(_catalogue()["presets"])


@cache
def _load_preset(name: str) -> SimParams:
    entry = _catalogue()["presets"][name]
    if "file" in entry:  # a whole fitted SimParams (bench/fit_simulator.py writes it)
        return SimParams.from_dict(_read_preset_file(entry["file"]))
    models = _read_preset_file("models.json")["models"]
    weak, strong = models[entry["weak"]], models[entry["strong"]]
    obs = _read_preset_file(f"observation_{entry['observation']}.json")
    return SimParams(
        name=name,
        weak=ModelStats(**weak["stats"]),
        strong=ModelStats(**strong["stats"]),
        observation=_observation(obs),
        # one termination hazard per preset: the weak model's (it writes most steps), as in the POMDP
        length_pmf=tuple(weak["length_pmf"]),
        token_corr=_catalogue()["token_corr"],
        sources={
            "weak": weak["source"],
            "strong": strong["source"],
            "observation": obs["source"],
            "token_corr": _catalogue()["token_corr_source"],
        },
    )


def load_params(preset_or_path: str | Path) -> SimParams:
    """A shipped preset by name, or a ``SimParams`` JSON file (from ``trim fit``) by path."""
    key = str(preset_or_path)
    if key in _catalogue()["presets"]:
        return _load_preset(key)
    path = Path(key)
    if path.suffix == ".json" or path.exists():
        try:
            return SimParams.from_dict(json.loads(path.read_text()))
        except OSError as e:
            raise ConfigError(f"cannot read simulator parameters {key!r}: {e.strerror}") from None
        except json.JSONDecodeError as e:
            raise ArtifactError(f"simulator parameters {key!r} are not JSON: {e}") from None
    raise ConfigError(f"unknown simulator preset {key!r}; valid: {', '.join(preset_names())} (or a .json path)")


def step_token_factor(params: SimParams, role: str) -> float:
    """Mean tokens of ``role``'s steps when it writes alone, over the mean tokens of a correct step."""
    z, w = hermegauss(DIFFICULTY_NODES)
    _, units, steps = one_role_run(params, role, z, w / w.sum())
    return units / steps


def one_role_run(params: SimParams, role: str, z: np.ndarray, w: np.ndarray) -> tuple[float, float, float]:
    """(accuracy, tokens in units of a correct step's mean, steps) when ``role`` writes every step."""
    p = params.accuracy_at(z, role)
    h = params.hazard if role == "weak" else params.strong_hazard
    recovery = params.recovery if role == "strong" else 0.0
    ok, wrong, acc, tokens, calls = np.ones_like(z), np.zeros_like(z), 0.0, 0.0, 0.0
    for t in range(params.max_steps):
        new_ok = ok * p + wrong * recovery
        new_wrong = ok + wrong - new_ok
        calls += float(w @ (ok + wrong))
        tokens += float(w @ (new_ok + params.wrong_token_factor * new_wrong))
        acc += float(w @ new_ok) * h[t]
        ok, wrong = new_ok * (1 - h[t]), new_wrong * (1 - h[t])
    return acc, tokens, calls
