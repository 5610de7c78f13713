"""The sweep runner on scripted backends: run directory, resume, shared calls, baselines' accounting."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import cast

import pytest

from trimroute import Engine, EngineConfig, Problem
from trimroute.errors import ConfigError, DataError
from trimroute.eval.matching import same_budget
from trimroute.eval.methods import AutoMix, MatchedRandom, Oracle, PolicyPoints, QueryRouter, parse_methods
from trimroute.eval.rundir import RunDir
from trimroute.eval.sweep import SweepOptions, SweepProgress, run_sweep
from trimroute.eval.training import TrainingRun, load_training
from trimroute.runner import cached_engine
from trimroute.store import CallStore
from trimroute.testing import ScriptedGenerator, ScriptedScorer
from trimroute.trajectories import read_trajectories
from trimroute.types import StepRequest

PROBLEMS = [Problem(f"p{i}", f"Compute {i} + {i}.", str(2 * i)) for i in range(1, 7)]


def _number(request: StepRequest) -> int:
    match = re.search(r"Compute (\d+)", request.messages[0].content)
    assert match is not None
    return int(match.group(1))


def weak_script(request: StepRequest) -> str:
    """Odd problems get a wrong first step (the scorer flags it) that leads to a wrong answer."""
    i, prefill = _number(request), request.prefill
    if prefill == "Solution:\n\n":
        return f"wrong: {i} + {i} = {2 * i + 1}" if i % 2 else f"Add {i} and {i}."
    return f"So \\boxed{{{2 * i + 1 if 'wrong' in prefill else 2 * i}}}"


def strong_script(request: StepRequest) -> str:
    i = _number(request)
    first = request.prefill == "Solution:\n\n"
    return f"{i} + {i} = {2 * i}, long careful strong step" if first else f"\\boxed{{{2 * i}}}"


def make_engine() -> tuple[Engine, ScriptedGenerator, ScriptedGenerator, ScriptedScorer]:
    weak, strong = ScriptedGenerator("weak", weak_script), ScriptedGenerator("strong", strong_script)
    scorer = ScriptedScorer()
    return Engine(weak, strong, scorer, EngineConfig(seed=0, max_steps=4)), weak, strong, scorer


async def sweep(
    tmp_path: Path, methods: list[str], store: CallStore | None = None, problems=PROBLEMS, *, name: str = "run",
    training: TrainingRun | None = None, setup: dict | None = None, options: SweepOptions | None = None,
):  # fmt: skip
    engine, weak, strong, scorer = make_engine()
    results = await run_sweep(
        cached_engine(engine, store) if store is not None else engine, problems, parse_methods(methods),
        RunDir(tmp_path / name), setup=setup or {"dataset": "scripted"}, store=store, options=options,
        training=training,
    )  # fmt: skip
    return results, weak, strong, scorer


def test_method_specs_expand_to_points() -> None:
    methods = parse_methods(["thr:0,0.25,...,1 random:matched", "automix:min:0.2,0.5 query:sw oracle"])
    assert methods[:2] == [PolicyPoints("weak", ("weak",)), PolicyPoints("strong", ("strong",))]
    assert methods[2] == PolicyPoints("thr", ("thr:0", "thr:0.25", "thr:0.5", "thr:0.75", "thr:1"))
    assert methods[3:] == [MatchedRandom(), AutoMix("min", (0.2, 0.5)), QueryRouter("sw", None), Oracle()]
    assert cast(PolicyPoints, parse_methods(["thr:0,0.1,...,1"])[2]).specs[3] == "thr:0.3"  # no float noise in names
    assert len(cast(PolicyPoints, parse_methods(["thr:0,0.05,...,1"])[2]).specs) == 21


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("random:matched", "thr"),
        ("automix:mean", "prod or min"),
        ("query:knn", "query:sw, query:mf, query:bert"),
        ("thr:0,0.1,...", "first,second,...,last"),
        ("thr:1,0.5,...,2", "increase"),
        ("thr:x,y", "numbers"),
        ("thr:2", "threshold"),
        ("nope", "valid"),
    ],
)
def test_bad_method_specs_say_what_is_wrong(spec: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_methods([spec])


async def test_run_directory_holds_config_trajectories_metrics_report_and_plot(tmp_path: Path) -> None:
    store = CallStore(tmp_path / "cache.sqlite")
    results, *_ = await sweep(tmp_path, ["thr:0,0.5,1 random:matched automix oracle"], store)
    store.close()
    run = tmp_path / "run"
    for name in ("config.json", "points.json", "calls.json", "metrics.json", "report.md", "accuracy_cost.png",
                 "accuracy_cost.svg"):  # fmt: skip
        assert (run / name).is_file(), name
    config = json.loads((run / "config.json").read_text())
    assert config["problem_ids"] == [p.id for p in PROBLEMS] and config["dataset"] == "scripted"
    points = json.loads((run / "points.json").read_text())
    for p in points:
        assert len(list(read_trajectories(run / p["file"]))) == len(PROBLEMS)
    assert json.loads((run / "metrics.json").read_text()) == json.loads(json.dumps(results))
    ref = results["references"]
    assert ref["r_weak"] == pytest.approx(0.5) and ref["r_strong"] == 1.0
    assert results["points"]["thr:0.5"]["accuracy"] == 1.0 and results["points"]["thr:0.5"]["pgr"] == 1.0
    assert results["points"]["oracle"]["accuracy"] == 1.0
    report = (run / "report.md").read_text()
    assert "`thr:0.5`" in report and "CPT(95%)" in report and "Model calls:" in report


async def test_metrics_are_consistent_with_the_trajectories(tmp_path: Path) -> None:
    results, *_ = await sweep(tmp_path, ["thr:0.5"])
    trajectories = list(read_trajectories(tmp_path / "run" / "trajectories" / "thr_0.5.jsonl"))
    point = results["points"]["thr:0.5"]
    graded = [t.correct for t in trajectories if t.correct is not None]
    assert len(graded) == len(trajectories)
    assert point["accuracy"] == sum(graded) / len(trajectories)
    assert point["mean_strong_tokens"] == sum(t.strong_tokens for t in trajectories) / len(trajectories)
    c_strong = results["references"]["c_strong"]
    assert point["strong_share"] == pytest.approx(point["mean_strong_tokens"] / c_strong)


async def test_sweep_points_share_calls_through_the_cache(tmp_path: Path) -> None:
    store = CallStore(tmp_path / "cache.sqlite")
    results, weak, strong, scorer = await sweep(tmp_path, ["thr:0,0.1,...,1"], store)
    store.close()
    calls = results["calls"]
    made, alone = sum(calls["made"].values()), sum(calls["alone"].values())
    # 11 threshold points: weak proposals and scores repeat exactly; only strong steps are new
    assert made == len(weak.requests) + len(strong.requests) + scorer.calls
    assert alone > 5 * made
    assert calls["requested"]["weak"] == calls["alone"]["weak"]


async def test_a_rerun_resumes_and_calls_no_model(tmp_path: Path) -> None:
    await sweep(tmp_path, ["thr:0.5"], problems=PROBLEMS[:3])
    with pytest.raises(ConfigError, match="another problem_ids"):
        await sweep(tmp_path, ["thr:0.5"])
    # a torn run: drop the last problem of one point, then resume
    path = tmp_path / "run" / "trajectories" / "thr_0.5.jsonl"
    path.write_text("".join(path.read_text().splitlines(keepends=True)[:2]))
    _, weak, strong, scorer = await sweep(tmp_path, ["thr:0.5 oracle"], problems=PROBLEMS[:3])
    assert len(list(read_trajectories(path))) == 3
    assert len(strong.requests) <= 2 and scorer.calls == 2  # only the missing problem ran
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["methods"] == ["weak", "strong", "thr:0.5", "oracle"]


async def test_automix_pays_for_the_weak_solution_the_scorer_and_the_strong_solution(tmp_path: Path) -> None:
    results, *_ = await sweep(tmp_path, ["automix:min:0.5"])
    run = tmp_path / "run" / "trajectories"
    weak = {t.problem.id: t for t in read_trajectories(run / "weak.jsonl")}
    strong = {t.problem.id: t for t in read_trajectories(run / "strong.jsonl")}
    for t in read_trajectories(run / "automix_min_0.5.jsonl"):
        w, s = weak[t.problem.id], strong[t.problem.id]
        assert t.usage.scorer.calls == 1
        if t.meta["routed_to"] == "strong":  # the odd problems: their wrong step scores 0.1
            assert t.usage.weak.generated_tokens == w.usage.weak.generated_tokens
            assert t.usage.weak.discarded_tokens == w.usage.weak.generated_tokens
            assert t.strong_tokens == s.strong_tokens and t.correct is True
            assert [d.text for d in t.discarded] == [st.text for st in w.steps]
        else:
            assert t.strong_tokens == 0 and t.steps[0].score == pytest.approx(0.9)
    assert results["points"]["automix:min:0.5"]["accuracy"] == 1.0


async def test_oracle_routes_only_fixable_failures_at_strong_cost(tmp_path: Path) -> None:
    results, *_ = await sweep(tmp_path, ["oracle"])
    strong = results["points"]["strong"]["mean_strong_tokens"]
    assert results["points"]["oracle"]["mean_strong_tokens"] == pytest.approx(strong / 2)
    assert results["oracle_band"][-1] == [pytest.approx(strong / 2), 1.0]


MANY = [Problem(f"m{i}", f"Compute {i} + {i}.", str(2 * i)) for i in range(1, 61)]


async def test_matched_random_searches_p_until_the_budget_matches(tmp_path: Path) -> None:
    results, *_ = await sweep(tmp_path, ["thr:0.5 random:matched"], problems=MANY)
    run = RunDir(tmp_path / "run")
    search = run.config()["notes"]["budget_matches"]["thr:0.5"]
    target = sum(t.strong_tokens for t in read_trajectories(run.path / "trajectories" / "thr_0.5.jsonl")) / len(MANY)
    (point,) = results["curves"]["random:matched"]["points"]  # the pilots join no curve
    assert search["random"] == point and search["target"] == pytest.approx(target)
    assert results["points"][point]["mean_strong_tokens"] == pytest.approx(search["achieved"])
    assert abs(search["achieved"] - target) <= 0.02 * target and search["matched"]
    assert len(search["pilots"]) > 1  # p = C̄(thr) / C̄(strong) alone misses: the search had to move
    (match,) = results["budget_matches"]
    assert match["same_budget"] and "same budget" in (run.path / "report.md").read_text()
    _, weak, strong, scorer = await sweep(tmp_path, ["thr:0.5 random:matched"], problems=MANY)
    assert weak.requests == strong.requests == [] and scorer.calls == 0  # pilots are kept: a rerun calls nothing


async def test_keep_final_random_is_matched_beside_the_plain_one(tmp_path: Path) -> None:
    results, *_ = await sweep(tmp_path, ["thr:0.5:keep-final random:matched random:matched:keep-final"], problems=MANY)
    run = RunDir(tmp_path / "run")
    searches = run.config()["notes"]["budget_matches"]
    thr = "thr:0.5:keep-final"
    assert set(searches) == {thr, f"{thr} vs random:matched:keep-final"}
    (kept,) = results["curves"]["random:matched:keep-final"]["points"]
    assert kept.endswith(":keep-final") and searches[f"{thr} vs random:matched:keep-final"]["random"] == kept
    assert {b["random"] for b in results["budget_matches"]} == {kept, searches[thr]["random"]}
    final_steps = [
        t.steps[-1].role for t in read_trajectories(run.path / "trajectories" / f"{kept.replace(':', '_')}.jsonl")
    ]
    assert final_steps and set(final_steps) == {"weak"}  # the answer step is never rewritten
    assert set(run.config()["notes"]["matched_random"].values()) == {thr}


async def test_a_resumed_search_replaces_its_own_matches_and_keeps_the_other_family(tmp_path: Path) -> None:
    spec = ["thr:0.5:keep-final random:matched random:matched:keep-final"]
    await sweep(tmp_path, spec, problems=MANY, options=SweepOptions(budget_pilots=1))
    before = set(RunDir(tmp_path / "run").config()["notes"]["matched_random"])
    results, *_ = await sweep(tmp_path, spec, problems=MANY)  # more pilots: the searches move on
    notes = RunDir(tmp_path / "run").config()["notes"]
    matched = {p for family in ("random:matched", "random:matched:keep-final")
               for p in results["curves"][family]["points"]}  # fmt: skip
    assert matched != before  # at least one match moved
    assert set(notes["matched_random"]) == {s["random"] for s in notes["budget_matches"].values()} == matched
    assert len(notes["budget_matches"]) == 2


async def test_a_budget_that_is_not_matched_is_not_called_the_same(tmp_path: Path) -> None:
    """On six problems random:p cannot land within ±2 % of every budget; the report says so where it fails."""
    results, *_ = await sweep(tmp_path, ["thr:0.5 random:matched"])
    (search,) = RunDir(tmp_path / "run").config()["notes"]["budget_matches"].values()
    (match,) = results["budget_matches"]
    assert match["same_budget"] == search["matched"] == same_budget(search["achieved"], search["target"])
    assert ("NOT the same budget" in search["describe"]) != search["matched"]


async def test_a_method_needing_scores_without_a_scorer_fails_before_any_call(tmp_path: Path) -> None:
    weak = ScriptedGenerator("weak", weak_script)
    engine = Engine(weak, ScriptedGenerator("strong", strong_script), None, EngineConfig())
    for spec in ("thr:0.5", "automix"):
        with pytest.raises(ConfigError, match="needs step scores"):
            await run_sweep(engine, PROBLEMS, parse_methods([spec]), RunDir(tmp_path / spec), setup={})
    assert weak.requests == []


class Recorder(SweepProgress):
    def __init__(self) -> None:
        self.picked: list[tuple[str, str, str]] = []
        self.steps: list[str] = []

    def live(self, point: str, problem: Problem, why: str) -> None:
        self.picked.append((point, problem.id, why))

    def step(self, problem: Problem, step) -> None:  # type: ignore[no-untyped-def]
        self.steps.append(step.role)


async def test_quantile_thresholds_and_a_live_problem_that_shows_a_regeneration(tmp_path: Path) -> None:
    engine, *_ = make_engine()
    progress = Recorder()
    results = await run_sweep(
        engine, PROBLEMS, parse_methods(["thr:quantile=0.2 random:matched"]), RunDir(tmp_path / "run"),
        setup={}, options=SweepOptions(live=True), progress=progress,
    )  # fmt: skip
    notes = RunDir(tmp_path / "run").config()["notes"]
    (k,) = notes["quantile_thresholds"].values()
    assert "thr:0" in results["points"] and f"thr:{k:g}" in results["points"]
    # the live problem is the first one whose weak solution has a step scored below k: p1 (odd: wrong first step)
    ((point, problem, why),) = progress.picked
    assert (point, problem) == (f"thr:{k:g}", "p1") and "regenerates at least one step" in why
    assert "strong" in progress.steps
    assert set(notes["matched_random"].values()) == {f"thr:{k:g}"}


TRAIN = [Problem(f"t{i}", f"Compute {i} + {i}.", str(2 * i)) for i in range(10, 22, 2)]  # even: weak solves all


async def test_baselines_train_on_a_separate_run_and_say_so(tmp_path: Path) -> None:
    await sweep(tmp_path, [], problems=TRAIN, name="train")
    training = load_training(tmp_path / "train")
    results, *_ = await sweep(tmp_path, ["automix:min:0.5"], training=training)
    # trained where the weak model never fails, AutoMix keeps every weak answer; cross-fitted on the
    # evaluated problems it escalates the odd ones (test_automix_pays_for_...)
    assert all(
        t.meta["routed_to"] == "weak" for t in read_trajectories(tmp_path / "run/trajectories/automix_min_0.5.jsonl")
    )
    assert results["baseline_training"] == {"automix:min": f"trained on 6 problems of {tmp_path / 'train'}"}
    assert f"automix:min trained on 6 problems of {tmp_path / 'train'}" in (tmp_path / "run/report.md").read_text()
    crossed, *_ = await sweep(tmp_path, ["automix:min:0.5"], name="crossed")
    assert crossed["baseline_training"] == {"automix:min": "cross-fitted (5 folds)"}


async def test_a_rerun_with_a_training_run_replaces_the_cross_fitted_curve(tmp_path: Path) -> None:
    await sweep(tmp_path, [], problems=TRAIN, name="train")
    first, *_ = await sweep(tmp_path, ["automix:min"])
    again, *_ = await sweep(tmp_path, ["automix:min"], training=load_training(tmp_path / "train"))
    points = {p.name for p in RunDir(tmp_path / "run").points if p.method == "automix:min"}
    assert points == set(again["curves"]["automix:min"]["points"]) != set(first["curves"]["automix:min"]["points"])
    assert all(again["points"][p]["strong_share"] in (0.0, 1.0) for p in points)  # all weak or all strong


async def test_a_training_run_must_be_disjoint_finished_and_made_with_the_same_models(tmp_path: Path) -> None:
    await sweep(tmp_path, [], problems=[*TRAIN, PROBLEMS[0]], name="overlap", setup={"setup": {"weak": "a"}})
    with pytest.raises(ConfigError, match="shares 1 problem\\(s\\) with the evaluation \\(e.g. 'p1'\\)"):
        await sweep(tmp_path, ["automix"], training=load_training(tmp_path / "overlap"), setup={"setup": {"weak": "a"}})
    await sweep(tmp_path, [], problems=TRAIN, name="train", setup={"setup": {"weak": "a"}})
    with pytest.raises(ConfigError, match="other models"):
        await sweep(tmp_path, ["automix"], training=load_training(tmp_path / "train"), setup={"setup": {"weak": "b"}})
    strong = tmp_path / "train" / "trajectories" / "strong.jsonl"
    strong.write_text(strong.read_text().splitlines(keepends=True)[0])
    with pytest.raises(DataError, match="has 1 of 6 strong-only results"):
        load_training(tmp_path / "train")
    with pytest.raises(DataError, match="not a trim eval run directory"):
        load_training(tmp_path / "missing")


async def test_a_baseline_the_training_run_cannot_train_is_left_out_and_reported(tmp_path: Path) -> None:
    await sweep(tmp_path, [], problems=TRAIN, name="train")  # the weak model solves all: no battle has a winner
    results, *_ = await sweep(tmp_path, ["query:mf oracle"], training=load_training(tmp_path / "train"))
    assert "query:mf" not in results["curves"] and "oracle" in results["curves"]
    assert results["baseline_training"]["query:mf"].startswith("not trained: matrix factorisation learns from")
