import math

import pytest

from trimroute.config import ScorerConfig
from trimroute.engine import Engine, EngineConfig
from trimroute.errors import ConfigError, ScorerError
from trimroute.policies import parse_policy
from trimroute.scorers import SCORERS
from trimroute.scorers.confidence import ConfidenceScorer
from trimroute.testing import ScriptedGenerator
from trimroute.types import Problem, Step

PROBLEM = Problem("p", "Half of 48?", answer="24")


def weak(text: str, logprobs: tuple[float, ...] | None) -> Step:
    return Step(text=text, role="weak", generated_tokens=len(logprobs or ()), token_logprobs=logprobs)


async def test_hesitant_step_scores_below_confident_one() -> None:
    steps = [weak("48/2 = 24", (-0.01, -0.02, -0.01)), weak("48/2 = 25", (-0.01, -2.5, -0.01))]
    sure, unsure = (await ConfidenceScorer().score(PROBLEM, steps)).values
    assert sure == pytest.approx(math.exp(-0.04 / 3))
    assert unsure < sure
    by_min = (await ConfidenceScorer(statistic="min").score(PROBLEM, steps)).values
    assert by_min[1] == pytest.approx(math.exp(-2.5))


async def test_strong_steps_are_trusted_and_cost_nothing() -> None:
    steps = [Step("48/2 = 24", "strong", 5), weak("So \\boxed{24}.", (-0.5,))]
    scores = await ConfidenceScorer().score(PROBLEM, steps)
    assert scores.values[0] == 1.0
    assert (scores.prompt_tokens, scores.calls) == (0, 0)


async def test_weak_step_without_logprobs_names_the_fix() -> None:
    with pytest.raises(ScorerError, match="weak_logprobs"):
        await ConfidenceScorer().score(PROBLEM, [weak("48/2 = 24", None)])


async def test_engine_feeds_the_weak_logprobs() -> None:
    gen = ScriptedGenerator("m", ["48/2 = 24", "So \\boxed{24}."])
    engine = Engine(gen, gen, ConfidenceScorer(), EngineConfig(weak_logprobs=True))
    trajectory = await engine.solve(PROBLEM, parse_policy("thr:0.5"))
    # the scripted generator gives every token log-probability -0.1
    assert [s.score for s in trajectory.steps] == pytest.approx([math.exp(-0.1)] * 2)


def test_factory_checks_options() -> None:
    scorer = SCORERS.create("confidence", ScorerConfig(kind="confidence", options={"statistic": "min"}))
    assert isinstance(scorer, ConfidenceScorer)
    assert scorer.statistic == "min"
    with pytest.raises(ConfigError, match="statistic must be one of"):
        SCORERS.create("confidence", ScorerConfig(kind="confidence", options={"statistic": "max"}))
