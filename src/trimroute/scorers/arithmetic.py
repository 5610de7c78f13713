"""Arithmetic verifier: a PRM-free step scorer that re-evaluates the calculations a step states.

Every chain ``a = b = c`` whose sides are plain numeric expressions (``48/2 = 24``, ``$2 \\times 9 = $18``,
``\\frac{3}{4} \\cdot 8 = 6``) is re-evaluated exactly with sympy; each adjacent pair with an operator on
one side is a claim. The score is the posterior mean of "claims hold" under a uniform prior,
``(1 + right) / (2 + checked)``: 0.5 (neutral) for a step with nothing checkable, below 0.5 as soon as
more claims fail than hold. Cascading failures start from a few wrong steps (TRIM §1); a miscalculation is
the cheapest kind to catch.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from tokenize import TokenError
from typing import TYPE_CHECKING

import sympy
from sympy.parsing.sympy_parser import parse_expr

from trimroute.errors import ConfigError
from trimroute.scorers.features import Features
from trimroute.types import Problem, Scores, Step

if TYPE_CHECKING:
    from trimroute.config import ScorerConfig

__all__ = ["ArithmeticScorer", "arithmetic_scorer", "Claim", "check_claims"]

_LATEX = [
    (re.compile(r"\\frac\s*\{([^{}]*)\}\s*\{([^{}]*)\}"), r"((\1)/(\2))"),
    (re.compile(r"\\(?:times|cdot)"), "*"),
    (re.compile(r"\\div"), "/"),
    (re.compile(r"\\left|\\right|\\[()\[\]]|\\,|\\!|\\ |\\\$|\\%"), " "),
]
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_TIMES_WORD = re.compile(r"(?<=[\d)])\s*[x×]\s*(?=[\d(])")
_PERCENT = re.compile(r"(\d+(?:\.\d+)?)\s*%")
# a maximal run of numeric-expression characters containing at least one "="
_RUN = re.compile(r"[\d.()+\-*/^=\s$]*=[\d.()+\-*/^=\s$]*")
_OPERATOR = re.compile(r"(?<=[\d)])\s*[-+*/^]")
_BARE_NUMBER = re.compile(r"-?\d+(?:\.(\d+))?")
_MAX_EXPONENT = 64


@dataclass(frozen=True)
class Claim:
    """One stated equality ``left = right`` and whether it holds."""

    left: str
    right: str
    holds: bool


def _normalise(text: str) -> str:
    text = re.sub(r"<<[^>]*>>", " ", text)  # GSM8K calculator annotations are the reference's, not the step's
    for pattern, repl in _LATEX:
        text = pattern.sub(repl, text)
    text = text.replace("{", "(").replace("}", ")").replace("−", "-").replace("·", "*").replace("÷", "/")
    text = _THOUSANDS.sub("", text)
    text = _TIMES_WORD.sub("*", text)
    return _PERCENT.sub(r"(\1/100)", text)


def _evaluate(side: str) -> sympy.Expr | None:
    """Exact value of a numeric expression, or None when it is not one (or is unsafe to evaluate)."""
    expr = side.replace("$", "").strip().rstrip(".").strip()
    if not expr or not re.fullmatch(r"[\d.()+\-*/^\s]+", expr) or not re.search(r"\d", expr):
        return None
    expr = expr.replace("^", "**")
    try:
        tree = parse_expr(expr, evaluate=False)
        if any(isinstance(p, sympy.Pow) and abs(p.exp) > _MAX_EXPONENT for p in sympy.preorder_traversal(tree)):
            return None
        value = sympy.nsimplify(tree.doit(), rational=True) if tree.has(sympy.Float) else tree.doit()
    except (SyntaxError, TokenError, TypeError, ValueError, ZeroDivisionError, OverflowError, sympy.SympifyError):
        return None
    return value if value.is_number and value.is_finite else None


def _tolerance(side: str) -> sympy.Rational:
    """A stated rounded value (``10/3 = 3.33``) holds to half a unit of its last decimal."""
    m = _BARE_NUMBER.fullmatch(side.replace("$", "").strip().rstrip(".").strip())
    if m and m.group(1):
        return sympy.Rational(5, 10 ** (len(m.group(1)) + 1))
    return sympy.Rational(1, 10**9)


def _sides(run: str, text: str, start: int, end: int) -> list[str]:
    """The sides of one equality chain; a side glued to a word (``f(1) = ...``, ``= 3x``) is symbolic."""
    start += len(run) - len(run.lstrip())
    end -= len(run) - len(run.rstrip())
    sides = run.split("=")
    if start > 0 and (text[start - 1].isalpha() or text[start - 1] == "_"):
        sides = sides[1:]
    if end < len(text) and (text[end].isalpha() or text[end] == "_"):
        sides = sides[:-1]
    return sides


def check_claims(text: str) -> list[Claim]:
    """Every checkable equality claim in ``text``."""
    norm = _normalise(text)
    claims = []
    for m in _RUN.finditer(norm):
        sides = _sides(m.group(), norm, m.start(), m.end())
        for left, right in zip(sides, sides[1:], strict=False):
            if not (_OPERATOR.search(left) or _OPERATOR.search(right)):
                continue  # "50 = 10" after "20% of" is a fragment, not a calculation
            lv, rv = _evaluate(left), _evaluate(right)
            if lv is None or rv is None:
                continue
            tol = max(_tolerance(left), _tolerance(right))
            holds = bool(abs(lv - rv) <= tol)
            claims.append(Claim(left.replace("$", "").strip(), right.replace("$", "").strip(), holds))
    return claims


@dataclass
class ArithmeticScorer:
    """Scores each step by the calculations it states (no model, no tokens)."""

    name: str = "arithmetic"
    feature_names: tuple[str, ...] = ("arith_checked", "arith_wrong")

    async def features(self, problem: Problem, steps: Sequence[Step]) -> Features:
        rows = []
        for step in steps:
            claims = check_claims(step.text)
            rows.append((float(len(claims)), float(sum(not c.holds for c in claims))))
        return Features(self.feature_names, tuple(rows), calls=0)

    async def score(self, problem: Problem, steps: Sequence[Step]) -> Scores:
        feats = await self.features(problem, steps)
        return feats.to_scores([(1.0 + n - wrong) / (2.0 + n) for n, wrong in feats.rows])

    async def aclose(self) -> None:
        return None


def arithmetic_scorer(config: ScorerConfig) -> ArithmeticScorer:
    """Registry factory (``kind: arithmetic``); the verifier takes no options."""
    if config.options:
        raise ConfigError(f"scorer 'arithmetic' takes no options, got {sorted(config.options)}")
    return ArithmeticScorer()
