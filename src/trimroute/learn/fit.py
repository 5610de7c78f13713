"""Fitting simulator parameters (``SimParams``) from measurements.

Two sources:

* ``fit_params``: a user's own runs — weak-only and strong-only trajectory JSONL files (graded) give the
  next-step accuracies, the solution-length distribution and the step token distributions; a
  step-labelled JSONL file (scores plus the first wrong step, as in ProcessBench or CHAMP) gives the
  observation model P(o | s) as a reflected 2-D KDE, then binned (paper §4.3, TRIM-POMDP).
* ``calibration_components``: the shipped presets, from ``../shared/calibration`` (the official
  release's measurements). ``write_calibration_presets`` regenerates ``trimroute/presets/*.json``.

The model behind every estimate: a step is correct with the writer's next-step accuracy p, independent
of the step's position and of the solution's length L, so P(correct | L) = p**L.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from scipy import optimize, special

from trimroute.errors import DataError
from trimroute.sim.presets import N_BINS, STATES, ModelStats, ObservationModel, SimParams
from trimroute.trajectories import read_trajectories
from trimroute.types import Trajectory

__all__ = [
    "calibration_components",
    "fit_next_step_accuracy",
    "fit_observation_model",
    "fit_params",
    "kaplan_meier_length_pmf",
    "lognormal_fit",
    "observations_from_labels",
    "params_from_runs",
    "write_calibration_presets",
]

DEFAULT_TOKEN_LOG_SD = 0.6  # assumed where no per-step token counts exist (see docs/simulator.md)
DEFAULT_TOKEN_CORR = 0.5  # assumed weak/strong log-token correlation at one position


def kaplan_meier_length_pmf(
    lengths: Sequence[int], survived: Sequence[int] = (), max_steps: int = 30
) -> tuple[float, ...]:
    """Length distribution from exact lengths plus right-censored ones (Kaplan-Meier, discrete).

    ``survived`` are solutions known only to have more than e-1 steps (e.g. an incorrect solution whose
    first error is step e: under the model its length is independent of its correctness). Lengths over
    ``max_steps`` are folded into the last step, where the engine stops anyway.
    """
    exact = np.minimum(np.asarray(lengths, dtype=int), max_steps)
    cens = np.asarray(survived, dtype=int)
    if exact.size == 0 or exact.min() < 1:
        raise DataError("need at least one solution length, all >= 1 step")
    h = np.ones(max_steps)
    for t in range(1, max_steps):
        at_risk = np.sum(exact >= t) + np.sum(cens > t)
        h[t - 1] = np.sum(exact == t) / at_risk if at_risk else 1.0
    survive = np.concatenate([[1.0], np.cumprod(1.0 - h)[:-1]])
    pmf = survive * h
    return tuple(float(x) for x in pmf / pmf.sum())


def fit_next_step_accuracy(lengths: Sequence[int], correct: Sequence[bool]) -> float:
    """Maximum-likelihood p from solution lengths and correctness, with P(correct | L) = p**L."""
    L = np.asarray(lengths, dtype=float)
    y = np.asarray(correct, dtype=bool)
    if L.size == 0:
        raise DataError("need at least one graded trajectory to fit a next-step accuracy")
    if y.all():
        return 1.0

    def nll(p: float) -> float:
        return -float(np.sum(y * L * np.log(p)) + np.sum(np.log1p(-(p ** L[~y]))))

    res = optimize.minimize_scalar(nll, bounds=(1e-6, 1 - 1e-9), method="bounded")
    return float(res.x)


def lognormal_fit(tokens: Iterable[int]) -> tuple[float, float]:
    """(mean, sd) of log token counts."""
    logs = np.log(np.maximum(np.asarray(list(tokens), dtype=float), 1.0))
    if logs.size < 2:
        raise DataError("need at least two steps to fit a token distribution")
    return float(logs.mean()), float(logs.std(ddof=1))


def observations_from_labels(records: Iterable[Mapping[str, Any]]) -> dict[str, np.ndarray]:
    """(min previous score, current score) points per hidden state from step-labelled solutions.

    A record has ``scores`` (one per step) and ``first_wrong`` (0-based index of the first wrong step;
    -1 or null when all steps are correct; ProcessBench's ``label`` is accepted too). Steps before the
    first wrong one are S0, the first wrong one S2, later ones S1. At step 1 the min is 1.0.
    """
    points: dict[str, list[tuple[float, float]]] = {s: [] for s in STATES}
    for n, rec in enumerate(records, 1):
        try:
            scores = [float(x) for x in rec["scores"]]
            fw = rec["first_wrong"] if "first_wrong" in rec else rec["label"]
        except (KeyError, TypeError, ValueError):
            raise DataError(f"labelled record {n} needs 'scores' (numbers) and 'first_wrong' (step index)") from None
        first_wrong = len(scores) if fw is None or int(fw) < 0 else int(fw)
        running_min = 1.0
        for i, c in enumerate(scores):
            if not 0.0 <= c <= 1.0:
                raise DataError(f"labelled record {n}: score {c} is outside [0, 1]")
            state = "S0" if i < first_wrong else "S2" if i == first_wrong else "S1"
            points[state].append((running_min, c))
            running_min = min(running_min, c)
    return {s: np.asarray(p, dtype=float).reshape(-1, 2) for s, p in points.items()}


def _reflected_bin_mass(x: np.ndarray, h: float) -> np.ndarray:
    """Mass of each 1-D bin under a Gaussian kernel at each x, reflected at 0 and 1 (boundary correction)."""
    edges = np.linspace(0.0, 1.0, N_BINS + 1)
    mass = np.zeros((x.size, N_BINS))
    for centre in (x, -x, 2.0 - x):
        cdf = special.ndtr((edges[None, :] - centre[:, None]) / h)
        mass += np.diff(cdf, axis=1)
    return mass


def fit_observation_model(points: Mapping[str, np.ndarray], name: str) -> ObservationModel:
    """P(o | s) as a reflected product-Gaussian KDE (Scott's bandwidth per axis), integrated over the bins."""
    probs = np.zeros((3, N_BINS, N_BINS))
    for k, state in enumerate(STATES):
        pts = points.get(state, np.zeros((0, 2)))
        if len(pts) < 2:
            raise DataError(f"need at least two labelled steps in state {state} to fit the observation model")
        n = len(pts)
        # floor keeps the kernel proper when an axis is constant (e.g. min = 1.0 before any error)
        hm, hc = (max(float(pts[:, j].std(ddof=1)) * n ** (-1 / 6), 0.01) for j in (0, 1))
        table = _reflected_bin_mass(pts[:, 0], hm).T @ _reflected_bin_mass(pts[:, 1], hc)
        probs[k] = table / table.sum()
    return ObservationModel(name=name, probs=probs)


def _graded(trajectories: list[Trajectory], path: str) -> list[Trajectory]:
    if not trajectories:
        raise DataError(f"{path}: no trajectories")
    if any(t.correct is None for t in trajectories):
        raise DataError(f"{path}: trajectories are not graded (correct is null); grade them first")
    return trajectories


def _model_stats(name: str, trajectories: list[Trajectory]) -> tuple[ModelStats, list[int]]:
    lengths = [len(t.steps) for t in trajectories]
    p = fit_next_step_accuracy(lengths, [bool(t.correct) for t in trajectories])
    mu, sd = lognormal_fit(s.generated_tokens for t in trajectories for s in t.steps)
    return ModelStats(name=name, next_step_accuracy=p, token_log_mean=mu, token_log_sd=sd), lengths


def _token_corr(weak: list[Trajectory], strong: list[Trajectory]) -> float:
    """Correlation of log tokens at the same (problem, position) in the two runs."""
    strong_steps = {t.problem.id: t.steps for t in strong}
    pairs = [
        (math.log(max(ws.generated_tokens, 1)), math.log(max(ss[i].generated_tokens, 1)))
        for t in weak
        for i, ws in enumerate(t.steps)
        if (ss := strong_steps.get(t.problem.id)) is not None and i < len(ss)
    ]
    if len(pairs) < 10:
        return DEFAULT_TOKEN_CORR
    return float(np.corrcoef(np.asarray(pairs).T)[0, 1])


def fit_params(
    weak_path: str | Path,
    strong_path: str | Path,
    labels_path: str | Path,
    *,
    name: str,
    max_steps: int = 30,
) -> SimParams:
    """A ``SimParams`` for the user's model pair and scorer, from their own runs and labels."""
    weak = _graded(list(read_trajectories(weak_path)), str(weak_path))
    strong = _graded(list(read_trajectories(strong_path)), str(strong_path))
    try:
        with Path(labels_path).open(encoding="utf-8") as f:
            records = [json.loads(line) for line in f if line.strip()]
    except OSError as e:
        raise DataError(f"cannot read labelled steps {str(labels_path)!r}: {e.strerror}") from None
    except json.JSONDecodeError as e:
        raise DataError(f"{labels_path}: not JSONL ({e})") from None
    sources = {
        "weak": f"fitted by trim fit from {weak_path}",
        "strong": f"fitted by trim fit from {strong_path}",
        "observation": f"reflected KDE on {labels_path}",
    }
    return params_from_runs(weak, strong, records, name=name, max_steps=max_steps, sources=sources)


def params_from_runs(
    weak: list[Trajectory],
    strong: list[Trajectory],
    records: Iterable[Mapping[str, Any]],
    *,
    name: str,
    max_steps: int,
    sources: Mapping[str, str],
    scorer: str = "",
) -> SimParams:
    """``fit_params`` on graded trajectories and labelled-step records already in memory."""
    weak_stats, weak_lengths = _model_stats("weak", weak)
    strong_stats, strong_lengths = _model_stats("strong", strong)
    observation = fit_observation_model(observations_from_labels(records), name=f"{name}-scores")
    return SimParams(
        name=name,
        weak=weak_stats,
        strong=strong_stats,
        observation=replace(observation, scorer=scorer),
        length_pmf=kaplan_meier_length_pmf(weak_lengths, max_steps=max_steps),
        strong_length_pmf=kaplan_meier_length_pmf(strong_lengths, max_steps=max_steps),
        token_corr=_token_corr(weak, strong),
        sources=dict(sources),
    )


# --- the shipped presets, from ../shared/calibration -------------------------------------------------

# Qwen3-8B is left out: its tokens per step were never measured (docs/simulator.md).
_MODEL_KEYS = {"qwen2.5-1.5b": "qwen2.5-1.5b-instruct", "qwen2.5-7b": "qwen2.5-7b-instruct"}
# name: (weak, strong, observation model); the official POMDP's own model: ProcessBench tables, MATH-train
# accuracies, the weak model's hazard for both roles
_PRESETS = {
    "qwen1.5b-7b-processbench": ("qwen2.5-1.5b", "qwen2.5-7b", "math_train"),
    "qwen1.5b-7b-omni": ("qwen2.5-1.5b", "qwen2.5-7b", "omni_math"),
}
PRM = "Qwen2.5-Math-PRM-7B"  # the scorer of every calibration file
FITTED_PRESETS = {"qwen1.5b-7b": "fitted_qwen1.5b-7b.json"}  # written by bench/fit_simulator.py


def _calibration_tokens(reference: Mapping[str, Any], mean_steps: Mapping[str, float]) -> dict[str, tuple[float, str]]:
    """Mean tokens per step for each model, and where the number comes from."""
    thr = {round(r["threshold"], 2): r for r in reference["trim_thr"]}
    strong_only, weak_only = thr[1.0], thr[0.0]
    per_call_7b = strong_only["avg_target_tokens_per_question"] / strong_only["avg_target_calls_per_question"]
    weak = weak_only["avg_draft_tokens_per_question"] / mean_steps["qwen2.5-1.5b"]
    src = "reference_curves_math500_qwen1.5b_7b.json"
    return {
        "qwen2.5-1.5b": (weak, f"{src}: weak-only draft tokens per problem / mean steps (Kaplan-Meier, MATH-train)"),
        "qwen2.5-7b": (per_call_7b, f"{src}: strong-only target tokens / target calls per problem"),
    }


def calibration_components(calibration_dir: str | Path) -> dict[str, dict[str, Any]]:
    """The JSON documents of ``trimroute/presets/`` computed from the calibration files."""
    root = Path(calibration_dir)
    stats = json.loads((root / "step_statistics_math_train.json").read_text())
    reference = json.loads((root / "reference_curves_math500_qwen1.5b_7b.json").read_text())
    stats_src = "step_statistics_math_train.json (" + stats["source"] + ")"
    fitted: dict[str, tuple[float, tuple[float, ...]]] = {}
    for key, raw in _MODEL_KEYS.items():
        m = stats["models"][raw]
        pmf = kaplan_meier_length_pmf(m["steps_in_correct_solutions"], m["first_error_step_in_incorrect_solutions"])
        fitted[key] = (m["next_step_accuracy"], pmf)
    mean_steps = {k: float(np.dot(np.arange(1, len(pmf) + 1), pmf)) for k, (_, pmf) in fitted.items()}
    tokens = _calibration_tokens(reference, mean_steps)
    models = {}
    for key, (p, pmf) in fitted.items():
        mean, token_src = tokens[key]
        sd = DEFAULT_TOKEN_LOG_SD
        models[key] = {
            "stats": ModelStats(key, p, math.log(mean) - sd**2 / 2, sd).to_dict(),
            "length_pmf": [round(x, 12) for x in pmf],
            "source": (
                f"next_step_accuracy and length_pmf (Kaplan-Meier over steps of correct solutions, censored at "
                f"the first error of incorrect ones): {stats_src}; mean tokens per step {mean:.2f}: {token_src}; "
                f"token_log_sd {sd}: assumed (no per-step token counts in the calibration data)"
            ),
        }
    docs: dict[str, dict[str, Any]] = {"models.json": {"models": models}}
    for obs_name in ("math_train", "omni_math"):
        raw = json.loads((root / f"prm_observation_model_{obs_name}.json").read_text())
        probs = np.zeros((3, N_BINS, N_BINS))
        for k, state in enumerate(("S0_all_correct", "S1_earlier_error", "S2_current_step_error")):
            for (m, c), p in zip(raw["states"][state]["bin_centers"], raw["states"][state]["probs"], strict=True):
                probs[k, int(m * N_BINS), int(c * N_BINS)] = p
            probs[k] /= probs[k].sum()
        doc = ObservationModel(obs_name, probs, scorer=PRM).to_dict()
        doc["source"] = f"prm_observation_model_{obs_name}.json ({raw['source']}); {raw['description']}"
        docs[f"observation_{obs_name}.json"] = doc
    docs["presets.json"] = {
        "presets": {
            **{n: {"weak": w, "strong": s, "observation": o} for n, (w, s, o) in _PRESETS.items()},
            **{n: {"file": f} for n, f in FITTED_PRESETS.items()},
        },
        "token_corr": DEFAULT_TOKEN_CORR,
        "token_corr_source": "assumed (no paired per-step token counts in the calibration data)",
    }
    return docs


def write_calibration_presets(calibration_dir: str | Path, out_dir: str | Path) -> None:
    """Regenerate the shipped preset files (``out_dir`` = ``src/trimroute/presets``)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name, doc in calibration_components(calibration_dir).items():
        (out / name).write_text(json.dumps(doc) + "\n")
