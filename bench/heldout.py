"""Does the CPU demo's routing hold on problems nobody tuned on? Choose on one set, report on another.

- **Tuning set** (every choice is made here): the first ``--tune-n`` GSM8K test problems that are *not* among
  ``gsm8k-offline``'s 100 (GSM-Symbolic's templates, hence the held-out problems, come from those 100), plus
  CHAMP's human first-wrong-step annotations. Weak-only solutions are generated with the demo's models and
  labelled like ``bench/scorer_auroc.py``'s GSM8K steps.
- **Held-out set** (no choice looks at it): ``reasoning-gym:gsm_symbolic`` at generator seed 17 (fixed in
  docs/cpu.md before the run), ``--heldout-n`` problems, labelled the same way from the generator's own worked
  solution (``metadata.answer_cot``).

Stages, each resumable (the run directories and ``features-*.npz`` under ``--out`` are kept):

1. weak-only solutions of the tuning set (``runner.route``, the demo's config) and per-step features of every
   weak step: the weak model's token log-probabilities and final-layer hidden states (one teacher-forced
   prefill), the strong model's likewise (one prefill: what the ``likelihood`` scorer already pays);
2. every candidate scorer's AUROC by 5-fold cross-validation over tuning solutions (grouped: a solution's
   steps stay in one fold); the best candidate that trim can compute (the weak model's states have no scorer)
   is fitted on all tuning steps and saved as a ``composite`` artifact; thresholds are the ``--quantiles``
   (0.15 and 0.35) of its scores on the tuning weak steps (absolute values from then on);
3. with ``--route``, the ``trim demo`` recipe on the held-out set with that scorer and those thresholds,
   ``random:matched`` searching ``--pilots`` random runs for each threshold's budget, and the paired accuracy
   differences of TRIM-Thr against weak-only and against random at its matched budget (95 % bootstrap CI),
   and how many of each point's strong-written steps are a solution's last step; with ``--keep-final``,
   TRIM-Thr and a second random control never rewrite the step that ends the solution (``:keep-final``);
4. the held-out and CHAMP AUROC of every candidate (trained on tuning steps only), also on the held-out steps
   without each solution's last one (a probe may just have learnt where the answer step is), and its cost.

    python bench/heldout.py --out runs/heldout --threads 2 --tune-n 50 --heldout-n 50 --champ-limit 10
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np
import scorer_auroc as sa  # the sibling bench: CHAMP's labels, the first-wrong-step rule, AUROC
from demo_paired import paired  # the sibling bench's paired comparison
from rich.console import Console
from rich.progress import track
from rich.table import Table
from sklearn.model_selection import GroupKFold

from trimroute.cli.eval import run_eval
from trimroute.data.datasets import load_dataset
from trimroute.demo import demo_config, demo_methods
from trimroute.eval.methods import parse_methods
from trimroute.eval.rundir import RunDir
from trimroute.eval.sweep import SweepOptions
from trimroute.models import pull_model
from trimroute.policies import parse_policy
from trimroute.runner import build_engine, route
from trimroute.scorers.composite import LogisticModel, fit_logistic
from trimroute.scorers.likelihood import TokenLogprobs
from trimroute.store import CallStore
from trimroute.trajectories import read_trajectories
from trimroute.types import Problem

HELDOUT_TASK, HELDOUT_SEED = "gsm_symbolic", 17
QUANTILES = (0.15, 0.35)
CAPS = {"max_steps": 30, "max_step_tokens": 256, "max_solution_tokens": 1024}  # the README's 100-problem run
SCALARS = ("conf_mean", "conf_min", "lik_mean", "lik_min")
console = Console()


# ---- problems and the numbers a correct solution may state ----


def tuning_problems(n: int, out: Path) -> tuple[str, list[Problem], dict[str, set[float]]]:
    """The first ``n`` GSM8K test problems outside gsm8k-offline, written to ``out`` as a JSONL dataset."""
    seen = {p.id for p in load_dataset("gsm8k-offline")}
    records = [json.loads(line) for line in sa.GSM8K.read_text().splitlines()]
    records = [r for r in records if str(r["idx"]) not in seen][:n]
    spec = out / "tune_problems.jsonl"
    rows = ({"id": str(r["idx"]), "question": r["question"], "answer": r["answer"].split("####")[-1].strip()}
            for r in records)  # fmt: skip
    spec.write_text("".join(json.dumps(r) + "\n" for r in rows))
    known = {str(r["idx"]): sa.known_numbers(r["question"], r["answer"]) for r in records}
    return str(spec), load_dataset(str(spec)), known


def heldout_problems(n: int) -> tuple[list[Problem], dict[str, set[float]]]:
    import reasoning_gym

    problems = load_dataset(f"reasoning-gym:{HELDOUT_TASK}", limit=n, seed=HELDOUT_SEED)
    generated = reasoning_gym.create_dataset(HELDOUT_TASK, size=n, seed=HELDOUT_SEED)
    known = {
        f"{HELDOUT_TASK}-{HELDOUT_SEED}-{i}": sa.known_numbers(e["question"], e["metadata"]["answer_cot"])
        for i, e in enumerate(generated)
    }
    return problems, known


# ---- stages 1 and 4: the demo's config through the one driver ----


def evaluate(problems: list[Problem], spec: str, seed: int, run: Path, cache: Path, scorer: str, methods: str,
             threads: int | None, pilots: int) -> RunDir:  # fmt: skip
    """The ``trim demo`` recipe (its config at the README's 100-problem caps) as ``trim eval`` runs it."""
    config = demo_config(scorer=scorer, threads=threads, **CAPS)
    data = {
        "spec": spec,
        "limit": len(problems),
        "shuffle": False,
        "seed": seed,
        "problem_field": None,
        "answer_field": None,
    }
    options = SweepOptions(title=f"held-out bench · {spec}", budget_pilots=pilots)
    rundir = RunDir(run)
    run_eval(config, problems, parse_methods([methods]), rundir, dataset=data, cache=cache, prices={},
             options=options)  # fmt: skip
    return rundir


def weak_only(problems: list[Problem], run: Path, cache: Path, threads: int | None) -> None:
    """Weak-only solutions through the one driver (``trim eval`` would add strong-only, not needed here)."""

    def show(done: int, total: int) -> None:
        console.print(f"{run.name}: {done}/{total} weak-only solutions")

    async def go() -> None:
        store = CallStore(cache)
        engine = build_engine(demo_config(scorer="likelihood", threads=threads, **CAPS), cache=store)
        try:
            await route(engine, problems, parse_policy("weak"), out=run / "trajectories" / "weak.jsonl",
                        on_progress=show)  # fmt: skip
        finally:
            await engine.aclose()
            store.close()

    asyncio.run(go())


# ---- stage 2: features ----


def all_steps(run: Path, known: dict[str, set[float]]) -> list[sa.Labelled]:
    """Every weak solution with all its steps; labels 1 / 0 (first wrong) / -1 (after it, or unplaceable)."""
    out = []
    for t in read_trajectories(run / "trajectories" / "weak.jsonl"):
        steps = tuple(s.text for s in t.steps)
        if t.correct:
            labels = [1] * len(steps)
        else:
            first = sa.first_wrong(steps, known[t.problem.id])
            labels = [-1] * len(steps) if first is None else [1] * first + [0] + [-1] * (len(steps) - first - 1)
        out.append(sa.Labelled(t.problem, steps, tuple(labels)))
    return out


def features(sols: Sequence[sa.Labelled], weak: TokenLogprobs, strong: TokenLogprobs, path: Path, what: str) -> dict:
    """Per step: scalars (conf/lik mean, min), hidden states (mean over the step's tokens, last token) of both
    models, label, solution index, and the strong prefill's cost; cached in ``path``."""
    if path.exists():
        return dict(np.load(path))
    cols: dict[str, list] = {k: [] for k in ("scalars", "w_mean", "w_last", "s_mean", "s_last", "label", "group")}
    t0, tokens0 = time.perf_counter(), strong.evaluated_tokens
    for g, sol in enumerate(track(sols, description=f"{what}: features", console=console)):
        text, spans = sa.step_spans(sol)
        (wl, ws, _), (sl, ss, _) = weak.span_states(text, spans), strong.span_states(text, spans)
        for i, y in enumerate(sol.labels):
            if not wl[i] or not sl[i]:
                continue  # a step with no token of its own (cannot happen with TRIM's non-empty steps)
            cols["scalars"].append((np.mean(wl[i]), min(wl[i]), np.mean(sl[i]), min(sl[i])))
            cols["w_mean"].append(ws[i].mean(0))
            cols["w_last"].append(ws[i][-1])
            cols["s_mean"].append(ss[i].mean(0))
            cols["s_last"].append(ss[i][-1])
            cols["label"].append(y)
            cols["group"].append(g)
    arrays = {k: np.asarray(v, dtype=np.float32 if k not in ("label", "group") else np.int64) for k, v in cols.items()}
    n = max(len(arrays["label"]), 1)
    arrays["cost"] = np.asarray([(time.perf_counter() - t0) / n, (strong.evaluated_tokens - tokens0) / n])
    np.savez_compressed(path, **arrays)
    return arrays


# ---- stage 3: candidates ----

Columns = Callable[[dict], np.ndarray]
Product = tuple[tuple[str, ...], Callable[[int], tuple[str, ...]]] | None  # components, feature names(width)


def _hidden(stat: str, *scalars: str) -> Product:
    components = ("confidence",) * bool(scalars) + (f"likelihood:hidden={stat}",)
    return components, lambda width: (*(f"hidden_{stat}_{i}" for i in range(width)), *scalars)


# name -> (feature columns, logistic C, the trim scorer computing those columns; None: no scorer does)
PROBES: dict[str, tuple[Columns, float, Product]] = {
    "probe: strong last-token state": (lambda f: f["s_last"], 0.01, _hidden("last")),
    "probe: strong mean state": (lambda f: f["s_mean"], 0.01, _hidden("mean")),
    "probe: weak last-token state": (lambda f: f["w_last"], 0.01, None),
    "probe: weak mean state": (lambda f: f["w_mean"], 0.01, None),
    "probe: strong mean state, C=0.001": (lambda f: f["s_mean"], 0.001, _hidden("mean")),
    "probe: strong mean state + conf/lik": (
        lambda f: np.hstack([f["s_mean"], f["scalars"]]), 0.01, _hidden("mean", *SCALARS)),
    "composite: conf + lik (logistic)": (
        lambda f: f["scalars"], 1.0, (("confidence", "likelihood"), lambda _: SCALARS)),
}  # fmt: skip
RAW = {name: i for i, name in enumerate(("confidence (mean)", "confidence (min)", "likelihood (mean)",
                                         "likelihood (min)"))}  # fmt: skip


def labelled(f: dict) -> np.ndarray:
    return f["label"] >= 0


def step_auroc(scores: np.ndarray, f: dict) -> float:
    """First-wrong-step AUROC of per-step ``scores`` over ``f``'s labelled steps."""
    m = labelled(f)
    return sa.auroc(scores[m], f["label"][m])


def not_final(f: dict) -> np.ndarray:
    """Which of ``f``'s steps are not their solution's last step (the answer step)."""
    g = f["group"]
    return np.r_[g[1:] == g[:-1], False]


def without_final(f: dict) -> dict:
    """``f`` less each solution's last step (the answer step, where a rewrite can no longer mend an earlier
    error): a probe that only learnt where the answer step is ranks nothing here."""
    keep = not_final(f)
    return {k: v if k == "cost" else v[keep] for k, v in f.items()}


def escalations(run: RunDir) -> dict[str, dict[str, int]]:
    """Per routed point: the strong-written steps, and how many of them are the solution's last step."""
    out = {}
    for point in (p for p in run.points if p.name not in ("weak", "strong")):
        where = [i == len(t.steps) - 1 for t in run.trajectories(point) for i, s in enumerate(t.steps)
                 if s.role == "strong"]  # fmt: skip
        out[point.name] = {"steps": len(where), "final": sum(where)}
    return out


def _fit(x: np.ndarray, correct: np.ndarray, c: float) -> LogisticModel:
    return fit_logistic(("bench",), tuple(f"x{i}" for i in range(x.shape[1])), x, correct, c=c)


def fit(columns: Columns, c: float, f: dict) -> LogisticModel:
    x, m = columns(f), labelled(f)
    return _fit(x[m], f["label"][m] == 1, c)


def cv_auroc(columns: Columns, c: float, f: dict) -> float:
    m = labelled(f)
    x, y, g = columns(f)[m], f["label"][m], f["group"][m]
    pred = np.zeros(len(y))
    for train, test in GroupKFold(5).split(x, y, g):
        pred[test] = _fit(x[train], y[train] == 1, c).predict(x[test])
    return sa.auroc(pred, y)


def table(title: str, header: Iterable[str], rows: Iterable[Iterable[str]]) -> None:
    t = Table(title=title)
    for i, h in enumerate(header):
        t.add_column(h, justify="left" if i == 0 else "right")
    for r in rows:
        t.add_row(*r)
    console.print(t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("runs/heldout"))
    ap.add_argument("--tune-n", type=int, default=100)
    ap.add_argument("--heldout-n", type=int, default=100)
    ap.add_argument("--champ-limit", type=int, default=60)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--route", action="store_true", help="also run TRIM-Thr and matched random on the held-out set")
    ap.add_argument(
        "--quantiles",
        type=float,
        nargs="+",
        default=list(QUANTILES),
        help="threshold quantiles of the chosen scorer on the tuning weak steps, one budget each",
    )
    ap.add_argument("--pilots", type=int, default=6, help="random runs each matched budget's search may make")
    ap.add_argument(
        "--keep-final",
        action="store_true",
        help="TRIM-Thr never rewrites the answer step (thr:K:keep-final); quantiles over the other tuning steps",
    )
    args = ap.parse_args()
    t0 = time.perf_counter()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    cache = out / "cache.sqlite"  # one call cache: the held-out weak-only solutions reuse the routing run's calls
    weak = TokenLogprobs(pull_model("qwen2.5-coder-0.5b-instruct"), n_threads=args.threads, hidden=True)
    strong = TokenLogprobs(pull_model("qwen2.5-coder-1.5b-instruct"), n_threads=args.threads, hidden=True)

    # every choice reads the tuning set only; CHAMP and the held-out set are only reported
    spec, tune_problems, tune_known = tuning_problems(args.tune_n, out)
    weak_only(tune_problems, out / "tune", cache, args.threads)
    tune = features(all_steps(out / "tune", tune_known), weak, strong, out / "features-tune.npz", "tuning")
    results = {name: {"tune": step_auroc(tune["scalars"][:, i], tune)} for name, i in RAW.items()}
    results |= {name: {"tune": cv_auroc(columns, c, tune)} for name, (columns, c, _) in PROBES.items()}
    # the weak model's states have no trim scorer: a route needs a candidate the engine can compute
    best = max((k for k in results if k in RAW or PROBES[k][2] is not None), key=lambda k: results[k]["tune"])
    held_problems, held_known = heldout_problems(args.heldout_n)
    summary: dict = {"heldout": {"task": HELDOUT_TASK, "seed": HELDOUT_SEED, "n": len(held_problems)},
                     "tune_n": len(tune_problems), "chosen": best}  # fmt: skip

    if args.route:
        scorer, scores = route_scorer(best, tune, out)
        steps = "the tuning weak steps"
        if args.keep_final:
            scores, steps = scores[not_final(tune)], f"{steps} but each solution's last"
        thresholds = [float(np.quantile(scores, q)) for q in args.quantiles]
        console.print(f"{best}: thresholds {thresholds} (quantiles {args.quantiles} of the scores of {steps})")
        methods = demo_methods(thresholds, keep_final=args.keep_final)
        run = evaluate(held_problems, f"reasoning-gym:{HELDOUT_TASK}", HELDOUT_SEED, out / "heldout-route", cache,
                       scorer, methods, args.threads, args.pilots)  # fmt: skip
        rows = paired(run)
        table("held-out paired accuracy differences (95 % bootstrap CI)", ["TRIM-Thr", "vs", "diff", "CI", "+", "-"],
              [[r["trim"], r["vs"], f"{r['difference']:+.1%}", f"[{r['ci95'][0]:+.1%}, {r['ci95'][1]:+.1%}]",
                str(r["only_trim"]), str(r["only_other"])] for r in rows])  # fmt: skip
        escalated = escalations(run)
        for point, e in escalated.items():
            console.print(f"{point}: {e['steps']} strong-written steps, {e['final']} of them a solution's last step")
        summary["routing"] = {"scorer": scorer, "methods": methods, "thresholds": thresholds,
                              "quantiles": args.quantiles, "paired": rows, "escalated": escalated,
                              "seconds": round(time.perf_counter() - t0, 1)}  # fmt: skip
        (out / "heldout.json").write_text(json.dumps(summary, indent=2) + "\n")  # kept if the report stage stops

    weak_only(held_problems, out / "heldout-weak", cache, args.threads)
    champ_all = list(sa.champ_solutions())
    pick = sorted(np.random.default_rng(0).permutation(len(champ_all))[: args.champ_limit])
    sets = {
        "tune": tune,
        "champ": features([champ_all[i] for i in pick], weak, strong, out / "features-champ.npz", "CHAMP"),
        "heldout": features(all_steps(out / "heldout-weak", held_known), weak, strong, out / "features-heldout.npz",
                            "held-out"),
    }  # fmt: skip
    sets["heldout, not final"] = without_final(sets["heldout"])
    for name, i in RAW.items():
        results[name] |= {k: step_auroc(f["scalars"][:, i], f) for k, f in sets.items() if k != "tune"}
    for name, (columns, c, _) in PROBES.items():
        model = fit(columns, c, tune)
        results[name] |= {
            k: step_auroc(np.asarray(model.predict(columns(f))), f) for k, f in sets.items() if k != "tune"
        }
    counts = {k: (int(labelled(f).sum()), int((f["label"] == 0).sum()), len(set(f["group"].tolist())))
              for k, f in sets.items()}  # fmt: skip
    header = ["scorer", *(f"{k} ({n} steps, {w} wrong, {g} sol.)" for k, (n, w, g) in counts.items())]
    rows = [[n + (" ← chosen" if n == best else ""), *(f"{r[k]:.3f}" for k in sets)] for n, r in results.items()]
    table("first-wrong-step AUROC (tune: 5-fold CV; the others: fitted on tune)", header, rows)
    cost = {k: {"seconds_per_step": float(f["cost"][0]), "strong_prefill_tokens_per_step": float(f["cost"][1])}
            for k, f in sets.items()}  # fmt: skip
    summary |= {"champ_solutions": len(pick), "steps": counts, "auroc": results, "feature_cost": cost,
                "seconds": round(time.perf_counter() - t0, 1)}  # fmt: skip
    (out / "heldout.json").write_text(json.dumps(summary, indent=2) + "\n")
    console.print(f"written {out / 'heldout.json'}")


def route_scorer(best: str, tune: dict, out: Path) -> tuple[str, np.ndarray]:
    """The demo's ``--scorer`` for the chosen candidate (a fitted one saved as a ``composite`` artifact,
    fitted on the labelled tuning steps) and its scores on every tuning weak step."""
    if best in RAW:
        kind, stat = best.split(" (")
        return f"{kind}:{stat.rstrip(')')}", np.exp(tune["scalars"][:, RAW[best]])
    columns, c, (components, names) = PROBES[best]  # main chooses among candidates with a scorer
    x, m = columns(tune), labelled(tune)
    model = fit_logistic(components, names(x.shape[1]), x[m], tune["label"][m] == 1, c=c,
                         meta={"fitted_on": "bench/heldout.py tuning steps", "candidate": best})  # fmt: skip
    return f"composite:{model.save(out / 'scorer_tune.json')}", np.asarray(model.predict(x))


if __name__ == "__main__":
    main()
