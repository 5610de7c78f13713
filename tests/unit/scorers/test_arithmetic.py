import pytest

from trimroute.config import ScorerConfig
from trimroute.errors import ConfigError
from trimroute.scorers import SCORERS
from trimroute.scorers.arithmetic import ArithmeticScorer, check_claims
from trimroute.types import Problem, Step

PROBLEM = Problem("p", "Half of 48?")


def step(text: str) -> Step:
    return Step(text=text, role="weak", generated_tokens=len(text.split()))


async def test_wrong_division_scores_below_right_one() -> None:
    scores = await ArithmeticScorer().score(PROBLEM, [step("48/2 = 25"), step("48/2 = 24")])
    assert scores.values[0] < 0.5 < scores.values[1]
    assert (scores.prompt_tokens, scores.generated_tokens, scores.calls) == (0, 0, 0)


async def test_step_with_nothing_checkable_is_neutral() -> None:
    scores = await ArithmeticScorer().score(PROBLEM, [step("We need half of the eggs."), step("x = 5")])
    assert scores.values == (0.5, 0.5)


async def test_more_right_claims_raise_the_score() -> None:
    one, two = (await ArithmeticScorer().score(PROBLEM, [step("3 + 4 = 7"), step("3 + 4 = 7 and 7 * 2 = 14")])).values
    assert 0.5 < one < two


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Janet sells 16 - 3 - 4 = <<16-3-4=9>>9 duck eggs.", [("16 - 3 - 4", "9", True)]),
        ("She makes 9 * 2 = $18 every day.", [("9 * 2", "18", True)]),
        ("$\\frac{3}{4} \\times 8 = 7$", [("((3)/(4)) * 8", "7", False)]),
        ("1,200 + 300 = 1,500", [("1200 + 300", "1500", True)]),
        ("3 x 4 = 12", [("3*4", "12", True)]),
        ("10/3 = 3.33", [("10/3", "3.33", True)]),
        ("10/3 = 3.4", [("10/3", "3.4", False)]),
        ("So 20% * 50 = 10.", [("(20/100) * 50", "10.", True)]),
        ("f(3) = f(1) + f(2) = 3 + 4 = 7", [("3 + 4", "7", True)]),  # f(1) + f(2) is symbolic
        ("20% of 50 = 10", []),  # "50 = 10" is a fragment, not a calculation
        ("3x + 2 = 11", []),
        ("10^1000 = 5", []),  # too large to evaluate safely: skipped
        ("1/0 = 3", []),
        ("(2 + 3 = 5", []),  # unbalanced: not an expression
    ],
)
def test_claims(text: str, expected: list[tuple[str, str, bool]]) -> None:
    assert [(c.left, c.right, c.holds) for c in check_claims(text)] == expected


def test_registered_and_rejects_options() -> None:
    assert isinstance(SCORERS.create("arithmetic", ScorerConfig(kind="arithmetic")), ArithmeticScorer)
    with pytest.raises(ConfigError, match="takes no options"):
        SCORERS.create("arithmetic", ScorerConfig(kind="arithmetic", options={"x": 1}))
