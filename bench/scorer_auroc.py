"""How well each PRM-free step scorer detects the first wrong step: AUROC on CHAMP and on GSM8K.

Labels:

- **CHAMP** (``champ-dataset``, MIT): 540 model solutions with a human-annotated first wrong step. Steps are
  the solution's paragraphs (split at blank lines, like TRIM's steps); the paragraph holding the annotated
  span is the first wrong step, earlier ones are correct, later ones are dropped (their status is unknown).
- **GSM8K** (the weak-only trajectories of ``trim demo``): in a solution whose final answer is right, every
  step counts as correct. In a wrong one, the first wrong step is the first step that states a computed
  number (the right side of a checkable calculation, or the boxed answer) found neither in the question
  nor among the gold solution's ``<<a=b>>`` results; earlier steps are correct, later ones dropped, and a
  wrong solution with no such step is left out (the error cannot be placed).

Features per step: arithmetic verifier; weak self-confidence (mean/min token log-probability under the weak
model, teacher-forced, which equals what the generator reports for its own tokens); strong likelihood
(mean/min under the strong model); the strong model as a judge (``scorers.judge``'s question, teacher-forced:
P(Yes) / (P(Yes) + P(No)) over those two answers, where the judge scorer sums every spelling among the top
log-probabilities), with its cost per step (seconds, strong prefill tokens). AUROC is for "score ranks the
wrong step below the correct ones" (0.5 = chance). The composite is fitted on CHAMP and evaluated both by
5-fold cross-validation on CHAMP and out of domain on GSM8K; its artifact is written to ``--out``.

    python bench/scorer_auroc.py --demo-out trim-demo --champ-limit 120 --out bench/results
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import math
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import track
from rich.table import Table
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold

from trimroute import __version__, prompts
from trimroute.models import pull_model
from trimroute.scorers.arithmetic import ArithmeticScorer, check_claims
from trimroute.scorers.composite import fit_logistic
from trimroute.scorers.judge import judge_messages
from trimroute.scorers.likelihood import TokenLogprobs
from trimroute.trajectories import read_trajectories
from trimroute.types import Problem, Step

GSM8K = Path(__file__).resolve().parents[2] / "shared" / "data" / "gsm8k_test.jsonl"
FEATURES = ("arith_checked", "arith_wrong", "conf_mean", "conf_min", "lik_mean", "lik_min")
SCORERS = {  # scorer -> its score as a function of the feature row (higher = more likely correct)
    "arithmetic": lambda f: (1 + f[0] - f[1]) / (2 + f[0]),
    "confidence (mean)": lambda f: math.exp(f[2]),
    "confidence (min)": lambda f: math.exp(f[3]),
    "likelihood (mean)": lambda f: math.exp(f[4]),
    "likelihood (min)": lambda f: math.exp(f[5]),
}


@dataclass(frozen=True)
class Labelled:
    """One solution: its problem, steps, and per step 1 = correct, 0 = first wrong (later steps dropped)."""

    problem: Problem
    steps: tuple[str, ...]
    labels: tuple[int, ...]


def champ_solutions() -> Iterator[Labelled]:
    spec = importlib.util.find_spec("champ_dataset")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("install the CHAMP data: pip install --no-deps champ-dataset==1.0.0")
    data = json.loads((Path(next(iter(spec.submodule_search_locations))) / "dataset_files" / "v0.json").read_text())
    for pid, p in sorted(data["problems"].items()):
        for key, ann in sorted((p.get("fws_annotations") or {}).items()):
            text, start = ann["text"], ann["start_idx"]
            steps, labels, at = [], [], 0
            for para in text.split("\n\n"):
                begin, at = at, at + len(para) + 2
                if not para.strip():
                    continue
                wrong = start is not None and begin <= start < at
                steps.append(para)
                labels.append(0 if wrong else 1)
                if wrong:
                    break
            yield Labelled(Problem(f"{pid}|{key}", p["_text"]), tuple(steps), tuple(labels))


def _numbers(text: str) -> set[float]:
    return {float(x.replace(",", "")) for x in re.findall(r"\d[\d,]*(?:\.\d+)?", text)}


def known_numbers(question: str, worked: str) -> set[float]:
    """Numbers a correct solution may state: the question's, a worked solution's results (GSM8K's
    ``<<a=b>>`` or, in plain text, what follows an ``=``) and its final answer (after ``####``)."""
    results = re.findall(r"<<[^=>]*=(-?[\d.]+)>>", worked) or re.findall(r"=\s*[^\d\s-]?(-?\d[\d,]*(?:\.\d+)?)", worked)
    return _numbers(question) | {float(v.replace(",", "")) for v in results} | _numbers(worked.split("####")[-1])


def first_wrong(steps: Sequence[str], known: set[float]) -> int | None:
    """The first step stating a computed number (a checkable calculation's result, or the boxed answer)
    that is not in ``known``; None when no step does (the error cannot be placed)."""
    for i, text in enumerate(steps):
        stated = {float(c.right.rstrip(".")) for c in check_claims(text) if _is_number(c.right.rstrip("."))}
        boxed = prompts.extract_boxed(text)
        if boxed is not None and _is_number(boxed.replace(",", "")):
            stated.add(float(boxed.replace(",", "")))
        if any(all(abs(v - k) > 1e-6 for k in known) for v in stated):
            return i
    return None


def gsm8k_solutions(demo_out: Path) -> Iterator[Labelled]:
    gold = {str(json.loads(line).get("idx")): json.loads(line) for line in GSM8K.read_text().splitlines()}
    for t in read_trajectories(demo_out / "trajectories" / "weak.jsonl"):
        steps = tuple(s.text for s in t.steps)
        if t.correct:
            yield Labelled(t.problem, steps, (1,) * len(steps))
            continue
        record = gold.get(t.problem.id)
        if record is None:
            continue
        i = first_wrong(steps, known_numbers(record["question"], record["answer"]))
        if i is not None:
            yield Labelled(t.problem, steps[: i + 1], (1,) * i + (0,))


def _is_number(text: str) -> bool:
    return re.fullmatch(r"-?\d+(?:\.\d+)?", text.strip()) is not None


def step_spans(sol: Labelled) -> tuple[str, list[tuple[int, int]]]:
    """The chat the generators continue, rendered, and each step's character span in it."""
    fmt = prompts.TRIM_V0  # the demo's measurements used this format
    text = prompts.render_chatml(prompts.messages(sol.problem, sol.steps, fmt))
    at = len(text) - len(fmt.prefill(sol.steps)) + len(fmt.steps_header)
    spans = []
    for s in sol.steps:
        spans.append((at, at + len(s)))
        at += len(s) + len(prompts.SEPARATOR)
    return text, spans


def model_features(model: TokenLogprobs, sol: Labelled) -> list[tuple[float, float]]:
    lps, _ = model.span_logprobs(*step_spans(sol))
    return [(sum(x) / len(x), min(x)) if x else (0.0, 0.0) for x in lps]


def _steps(sol: Labelled) -> list[Step]:
    return [Step(text=s, role="weak", generated_tokens=0) for s in sol.steps]


def featurise(sols: Sequence[Labelled], weak: TokenLogprobs, strong: TokenLogprobs, what: str) -> np.ndarray:
    rows = []
    arith = ArithmeticScorer()
    for sol in track(sols, description=f"{what}: features"):
        steps = _steps(sol)
        a = asyncio.run(arith.features(sol.problem, steps)).rows
        c, lk = model_features(weak, sol), model_features(strong, sol)
        rows += [(*a[i], *c[i], *lk[i]) for i in range(len(steps))]
    return np.asarray(rows, dtype=float)


def judge_scores(strong: TokenLogprobs, sols: Sequence[Labelled], what: str) -> tuple[np.ndarray, dict[str, float]]:
    """P(Yes) of the strong model asked whether each step is correct, and the judge's cost per step."""
    t0, tokens0, out = time.perf_counter(), strong.evaluated_tokens, []
    for sol in track(sols, description=f"{what}: judge"):
        steps = _steps(sol)
        for i in range(len(steps)):
            prompt = prompts.render_chatml(judge_messages(sol.problem, steps[: i + 1]))
            yes, no = (
                sum(strong.span_logprobs(prompt + a, [(len(prompt), len(prompt) + len(a))])[0][0])
                for a in ("Yes", "No")
            )
            out.append(1.0 / (1.0 + math.exp(no - yes)))
    n = max(len(out), 1)
    cost = {
        "seconds_per_step": (time.perf_counter() - t0) / n,
        "prefill_tokens_per_step": (strong.evaluated_tokens - tokens0) / n,
    }
    return np.asarray(out), cost


def auroc(scores: Sequence[float], labels: Sequence[int]) -> float:
    """AUROC of ranking wrong steps (label 0) below correct ones."""
    return float(roc_auc_score(1 - np.asarray(labels), -np.asarray(scores)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--demo-out", type=Path, required=True, help="output folder of a `trim demo` run")
    ap.add_argument("--weak", default="qwen2.5-coder-0.5b-instruct")
    ap.add_argument("--strong", default="qwen2.5-coder-1.5b-instruct")
    ap.add_argument("--champ-limit", type=int, default=None, help="solutions of CHAMP to use (default: all 540)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", type=Path, default=Path("bench/results"))
    args = ap.parse_args()
    console = Console()
    t0 = time.perf_counter()
    weak = TokenLogprobs(pull_model(args.weak), n_ctx=4096, n_threads=args.threads)
    strong = TokenLogprobs(pull_model(args.strong), n_ctx=4096, n_threads=args.threads)
    champ = list(champ_solutions())
    n_champ_all = len(champ)
    # a seeded subsample keeps both labels' proportions when the CPU budget cannot cover all 540
    # the verifier needs no model: it is measured on all 540 annotated solutions
    every = [asyncio.run(ArithmeticScorer().score(c.problem, _steps(c))).values for c in champ]
    arith_all = auroc([v for vs in every for v in vs], [y for c in champ for y in c.labels])
    champ = [champ[i] for i in sorted(np.random.default_rng(0).permutation(len(champ))[: args.champ_limit])]
    gsm = list(gsm8k_solutions(args.demo_out))
    sets = {k: (sols, featurise(sols, weak, strong, k)) for k, sols in (("CHAMP", champ), ("GSM8K", gsm))}
    labels = {k: np.asarray([y for s in sols for y in s.labels]) for k, (sols, _) in sets.items()}
    results: dict[str, dict[str, float]] = {}
    for name, fn in SCORERS.items():
        results[name] = {k: auroc([fn(r) for r in x], labels[k]) for k, (_, x) in sets.items()}
    judged = {k: judge_scores(strong, sols, k) for k, (sols, _) in sets.items()}
    results["judge (strong, yes/no)"] = {k: auroc(v, labels[k]) for k, (v, _) in judged.items()}
    x_c, y_c = sets["CHAMP"][1], labels["CHAMP"]
    cv = np.zeros(len(y_c))
    for train, test in StratifiedKFold(5, shuffle=True, random_state=0).split(x_c, y_c):
        fold = fit_logistic(("arithmetic", "confidence", "likelihood"), FEATURES, x_c[train], y_c[train])
        cv[test] = fold.predict(x_c[test])
    model = fit_logistic(
        ("arithmetic", "confidence", "likelihood"),
        FEATURES,
        x_c,
        y_c,
        meta={"fitted_on": f"CHAMP first-wrong-step labels, {len(champ)} solutions", "weak": args.weak,
              "strong": args.strong},
    )  # fmt: skip
    artifact = model.save(args.out / "composite_champ.json")
    results["composite (CHAMP-fitted)"] = {
        "CHAMP": auroc(cv, y_c),
        "GSM8K": auroc(model.predict(sets["GSM8K"][1]), labels["GSM8K"]),
    }
    console.print(f"arithmetic verifier on all {n_champ_all} CHAMP solutions: AUROC {arith_all:.3f}")
    table = Table(title="AUROC for detecting the first wrong step (0.5 = chance)")
    table.add_column("scorer")
    for k, (sols, _) in sets.items():
        n_wrong = int((labels[k] == 0).sum())
        table.add_column(f"{k} ({len(sols)} solutions, {len(labels[k])} steps, {n_wrong} wrong)", justify="right")
    for name, row in results.items():
        table.add_row(name, *(f"{row[k]:.3f}" for k in sets))
    console.print(table)
    summary = {
        "trimroute_version": __version__,
        "champ_solutions_used": len(champ),
        "champ_solutions_total": n_champ_all,
        "arithmetic_auroc_all_champ": arith_all,
        "gsm8k_solutions": len(gsm),
        "steps": {k: int(len(v)) for k, v in labels.items()},
        "wrong_steps": {k: int((v == 0).sum()) for k, v in labels.items()},
        "auroc": results,
        "judge_cost": {k: c for k, (_, c) in judged.items()},
        "composite_artifact": str(artifact),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    (args.out / "scorer_auroc.json").write_text(json.dumps(summary, indent=2) + "\n")
    console.print(f"written {args.out / 'scorer_auroc.json'} and {artifact}")


if __name__ == "__main__":
    main()
