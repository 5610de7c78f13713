"""The paper's query-level baselines on small synthetic data with known answers."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from trimroute.errors import ConfigError, DataError
from trimroute.eval.baselines import (
    Example,
    Outcome,
    Pairwise,
    cross_fitted_scores,
    examples_from,
    make_router,
    memoized,
    score_baseline,
)
from trimroute.eval.baselines.automix import AutoMixPRM
from trimroute.eval.baselines.matrix_factorization import MatrixFactorization, MFConfig
from trimroute.eval.baselines.sw_ranking import SWRanking
from trimroute.types import Problem, StopReason, Trajectory, Usage

STRONG_WINS, TIE, WEAK_WINS = Outcome(False, True), Outcome(True, True), Outcome(True, False)


class TableEmbedder:
    """Texts are names of fixed vectors (a stand-in for MiniLM in unit tests of one router)."""

    def __init__(self, vectors: dict[str, np.ndarray]) -> None:
        self.vectors = vectors
        self.calls = 0

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        self.calls += 1
        return np.stack([self.vectors[t] for t in texts])


def _clusters(n: int, seed: int = 0) -> tuple[TableEmbedder, list[Example], list[Outcome]]:
    """Problems near direction A: only strong solves them; near B: only weak does; near C: ties."""
    rng = np.random.default_rng(seed)
    centres = {"a": [1.0, 0, 0, 0], "b": [0, 1.0, 0, 0], "c": [0, 0, 1.0, 0]}
    label = {"a": STRONG_WINS, "b": WEAK_WINS, "c": TIE}
    vectors, examples, outcomes = {}, [], []
    for k in range(n):
        c = "abc"[k % 3]
        name = f"{c}{k}"
        vectors[name] = np.asarray(centres[c]) + 0.15 * rng.standard_normal(4)
        examples.append(Example(name))
        outcomes.append(label[c])
    return TableEmbedder(vectors), examples, outcomes


def test_pairwise_labels_are_routellm_battles() -> None:
    assert [o.pairwise for o in (STRONG_WINS, TIE, WEAK_WINS, Outcome(False, False))] == [
        Pairwise.STRONG_WINS,
        Pairwise.TIE,
        Pairwise.WEAK_WINS,
        Pairwise.TIE,
    ]


# --- SW ranking -------------------------------------------------------------------------------------------


def _routellm_sw(train: np.ndarray, wins: list[Pairwise], query: np.ndarray) -> float:
    """RouteLLM's own recipe: similarity weights, then compute_elo_mle_with_tie's logistic regression on
    duplicated battles (model_a = strong, model_b = weak), a tie split into one win each."""
    sims = train @ query / (np.linalg.norm(train, axis=1) * np.linalg.norm(query))
    weights = 10 * 10 ** (sims / sims.max())
    n = len(wins)
    x = np.tile([[math.log(10), -math.log(10)]], (2 * n, 1))
    y = np.zeros(2 * n)
    for i, w in enumerate(wins):
        y[i] = y[n + i] = float(w == Pairwise.STRONG_WINS)
        if w == Pairwise.TIE:
            y[i] = 1.0  # first copy: strong wins; second copy: weak wins
    lr = LogisticRegression(fit_intercept=False, C=np.inf)  # RouteLLM's penalty=None
    lr.fit(x, y, sample_weight=np.concatenate([weights] * 2))
    strong, weak = 400 * lr.coef_[0] + 1000
    return float(1 - 1 / (1 + 10 ** ((strong - weak) / 400)))


def test_sw_ranking_is_routellms_weighted_bradley_terry() -> None:
    embed, examples, outcomes = _clusters(30)
    router = SWRanking(embed)
    router.fit(examples, outcomes)
    train = embed([e.text for e in examples])
    for name in ("a0", "b1", "c2", "a3"):
        expected = _routellm_sw(train, [o.pairwise for o in outcomes], embed([name])[0])
        assert router.score([Example(name)])[0] == pytest.approx(expected, abs=1e-4)


def test_sw_ranking_favours_the_strong_model_near_its_wins() -> None:
    embed, examples, outcomes = _clusters(30)
    router = SWRanking(embed)
    router.fit(examples[3:], outcomes[3:])
    a, b, c = router.score(examples[:3])  # held out: one problem of each cluster
    assert a > c > b


# --- matrix factorisation ---------------------------------------------------------------------------------


def test_matrix_factorisation_learns_who_wins_where() -> None:
    embed, examples, outcomes = _clusters(60)
    router = MatrixFactorization(embed, MFConfig(epochs=100, lr=1e-2))
    router.fit(examples[3:], outcomes[3:])
    a, b, _ = router.score(examples[:3])
    assert a > 0.7 and b < 0.3
    again = MatrixFactorization(embed, MFConfig(epochs=100, lr=1e-2))
    again.fit(examples[3:], outcomes[3:])
    assert np.allclose(again.score(examples[:3]), router.score(examples[:3]))  # seeded


def test_matrix_factorisation_needs_a_decisive_problem() -> None:
    embed, examples, _ = _clusters(6)
    with pytest.raises(DataError, match="only one model solves"):
        MatrixFactorization(embed).fit(examples, [TIE] * len(examples))


# --- BERT classifier ----------------------------------------------------------------------------------------


def test_bert_classifier_fine_tunes_on_the_pairwise_labels() -> None:
    from trimroute.eval.baselines.bert import BertClassifier, BertConfig

    hard = [f"Evaluate the contour integral number {k} around the essential singularity" for k in range(12)]
    easy = [f"What is {k} plus {k + 1}?" for k in range(12)]
    router = BertClassifier(BertConfig(epochs=3, lr=2e-4, batch_size=8, max_length=32))
    router.fit([Example(t) for t in hard + easy], [STRONG_WINS] * 12 + [TIE] * 12)
    h, e = router.score(
        [Example("Evaluate the contour integral around a pole of order three"), Example("What is 40 plus 2?")]
    )
    assert h > 0.5 > e


# --- AutoMix ------------------------------------------------------------------------------------------------


def test_automix_bins_the_verifier_score_and_counts_needy_problems() -> None:
    router = AutoMixPRM(bins=4)  # centres 0, 0.25, 0.5, 0.75, 1
    scores = [0.1, 0.05, 0.2, 0.3, 0.35, 0.9, 0.95]  # bins 0, 0, 1, 1, 1, 4, 4
    outcomes = [STRONG_WINS, TIE, STRONG_WINS, STRONG_WINS, WEAK_WINS, TIE, Outcome(False, False)]
    router.fit([Example("q", s) for s in scores], outcomes)
    probe = [Example("q", s) for s in (0.0, 0.125, 0.3, 0.5, 0.8, 1.0)]  # 0.125 is half-way: bin 1
    assert router.score(probe).tolist() == pytest.approx([0.5, 2 / 3, 2 / 3, 0.0, 0.0, 0.0])  # bins 2, 3 empty


def test_automix_escalates_where_the_expected_return_is_higher() -> None:
    """At trade-off λ, escalating a bin beats keeping the weak answer iff P(NEEDY) > λ·C̄."""
    router = AutoMixPRM(bins=2)
    router.fit([Example("q", s) for s in (0.0, 0.0, 0.0, 0.5, 0.5)], [STRONG_WINS, STRONG_WINS, TIE, TIE, TIE])
    lam, c_strong = 1 / 300, 150.0  # λ·C̄ = 0.5
    needy, good = np.array([2 / 3, 0.0]), np.array([1 / 3, 1.0])
    keep, escalate = good, good + needy - lam * c_strong
    assert (router.score([Example("q", 0.0), Example("q", 0.5)]) >= lam * c_strong).tolist() == (
        escalate > keep
    ).tolist()


def test_automix_needs_verifier_scores() -> None:
    with pytest.raises(DataError, match="verifier's score"):
        AutoMixPRM().fit([Example("q")], [TIE])
    with pytest.raises(ConfigError, match="at least 1 bin"):
        AutoMixPRM(bins=0)


# --- training splits ----------------------------------------------------------------------------------------


class Memoriser:
    """Fails if asked to score a problem it was trained on: cross-fitting must never leak."""

    def fit(self, examples: Sequence[Example], outcomes: Sequence[Outcome]) -> None:
        self.seen = {e.text for e in examples}

    def score(self, examples: Sequence[Example]) -> np.ndarray:
        assert not self.seen & {e.text for e in examples}
        return np.array([float(e.text[1:]) for e in examples])


def test_cross_fitting_scores_every_problem_with_a_router_that_never_saw_it() -> None:
    examples = [Example(f"q{i}") for i in range(11)]
    scores = cross_fitted_scores(Memoriser, examples, [TIE] * 11, folds=3)
    assert scores.tolist() == list(range(11))
    with pytest.raises(ConfigError, match="folds >= 2"):
        cross_fitted_scores(Memoriser, examples[:2], [TIE] * 2, folds=3)


def test_score_baseline_says_how_it_was_trained() -> None:
    embed, examples, outcomes = _clusters(30)
    separate = score_baseline("sw", examples[:6], train=(examples[6:], outcomes[6:]), embed=embed)
    assert separate.training == "separate split (24 problems)" and separate.scores.shape == (6,)
    crossed = score_baseline("sw", examples, evaluation_outcomes=outcomes, embed=embed, folds=5)
    assert crossed.training == "cross-fitted (5 folds)" and crossed.scores.shape == (30,)
    with pytest.raises(ConfigError, match="--train RUN_DIR"):
        score_baseline("sw", examples, embed=embed)
    with pytest.raises(ConfigError, match="valid: sw, mf, bert, automix"):
        make_router("smoothie")


def test_memoized_embeds_each_text_once() -> None:
    embed, examples, _ = _clusters(6)
    cached = memoized(embed)
    first = cached([e.text for e in examples])
    again = cached([e.text for e in reversed(examples)])
    assert embed.calls == 1 and np.array_equal(again, first[::-1])


def _graded(pid: str, correct: bool | None) -> Trajectory:
    return Trajectory(
        problem=Problem(pid, f"text of {pid}", "1"),
        steps=(),
        discarded=(),
        stop_reason=StopReason.ANSWER,
        usage=Usage(),
        policy="weak",
        correct=correct,
    )


def test_examples_from_a_runs_trajectories() -> None:
    weak = [_graded("p0", True), _graded("p1", False)]
    strong = [_graded("p1", True), _graded("p0", False)]  # any order: matched by problem id
    examples, outcomes = examples_from(weak, strong, {"p0": 0.9, "p1": 0.2})
    assert examples == [Example("text of p0", 0.9), Example("text of p1", 0.2)]
    assert [o.pairwise for o in outcomes] == [Pairwise.WEAK_WINS, Pairwise.STRONG_WINS]
    with pytest.raises(DataError, match="trim grade RUN"):
        examples_from([_graded("p0", None)], strong)
