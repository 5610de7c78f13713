"""The routing rules of DESIGN.md §4, checked on scripted backends."""

from __future__ import annotations

import asyncio

import pytest

from trimroute import Engine, EngineConfig, Problem, parse_policy
from trimroute.errors import ConfigError, ScorerError
from trimroute.testing import ScriptedGenerator, ScriptedScorer
from trimroute.types import Action, Generation, Scores, StepRequest, StopReason

P = Problem("p1", "What is 1 + 1?", "2")


def engine(weak_script, strong_script, scorer=None, **cfg) -> tuple[Engine, ScriptedGenerator, ScriptedGenerator]:
    weak = ScriptedGenerator("weak", weak_script)
    strong = ScriptedGenerator("strong", strong_script)
    return Engine(weak, strong, scorer or ScriptedScorer(), EngineConfig(**cfg)), weak, strong


async def test_regenerates_exactly_the_low_scored_step_from_the_same_prefix() -> None:
    eng, weak, strong = engine(["a = 1", "wrong b = 3", "c = 2", "so \\boxed{2}"], ["x", "b = 1", "y", "z"])
    t = await eng.solve(P, parse_policy("thr:0.5"))
    assert [s.role for s in t.steps] == ["weak", "strong", "weak", "weak"]
    assert [s.text for s in t.steps] == ["a = 1", "b = 1", "c = 2", "so \\boxed{2}"]
    assert strong.requests[0].prefill == weak.requests[1].prefill == "Solution: a = 1\n\n"
    assert strong.requests[0].messages == weak.requests[1].messages
    # the weak model continues after the strong step, from a prefix that contains it
    assert weak.requests[2].prefill == "Solution: a = 1\n\nb = 1\n\n"
    assert [d.text for d in t.discarded] == ["wrong b = 3"]
    assert t.discarded[0].action is Action.REGENERATE and t.discarded[0].score == pytest.approx(0.1)
    assert t.steps[1].score == pytest.approx(0.1) and t.steps[1].action is Action.REGENERATE
    assert t.stop_reason is StopReason.ANSWER and t.final_answer == "2"
    assert t.usage.weak.generated_tokens == 3 + 4 + 3 + 2
    assert t.usage.weak.discarded_tokens == 4
    assert t.usage.strong.generated_tokens == 3 and t.usage.strong.calls == 1
    assert t.usage.scorer.calls == 4
    assert t.escalations == 1


async def test_regenerated_final_proposal_ends_with_the_strong_step() -> None:
    eng, _, strong = engine(["a", "wrong \\boxed{3}", "never"], ["x", "therefore 2 is it"])
    t = await eng.solve(P, parse_policy("thr:0.5"))
    assert [s.role for s in t.steps] == ["weak", "strong"]
    assert t.steps[-1].text == "therefore 2 is it"
    assert t.stop_reason is StopReason.ANSWER  # the final weak proposal ended the solution
    assert len(strong.requests) == 1


async def test_keep_final_keeps_the_weak_answer_step_however_it_scores() -> None:
    eng, _, strong = engine(["wrong a", "wrong \\boxed{3}", "never"], ["a", "therefore 2 is it"])
    t = await eng.solve(P, parse_policy("thr:0.5:keep-final"))
    assert [s.role for s in t.steps] == ["strong", "weak"]
    assert t.final_answer == "3" and len(strong.requests) == 1


@pytest.mark.parametrize(
    ("script", "reason"),
    [(["a", "b<eos>"], StopReason.EOS), (["a", " ".join(["w"] * 50)], StopReason.LENGTH)],
)
async def test_eos_and_length_end_the_solution(script: list[str], reason: StopReason) -> None:
    eng, weak, _ = engine(script, ["s"], max_step_tokens=10)
    t = await eng.solve(P, parse_policy("weak"))
    assert t.stop_reason is reason and len(t.steps) == 2 and len(weak.requests) == 2


async def test_step_cap_and_token_cap() -> None:
    eng, _, _ = engine(["one two"], ["s"], max_steps=5)
    assert (await eng.solve(P, parse_policy("weak"))).stop_reason is StopReason.MAX_STEPS
    eng, weak, _ = engine(["one two three"], ["s"], max_solution_tokens=7)
    t = await eng.solve(P, parse_policy("weak"))
    # 3 + 3 tokens leave room for 1: the third step is cut to max_tokens=1 and ends by length
    assert weak.requests[2].max_tokens == 1
    assert t.stop_reason is StopReason.LENGTH and sum(s.generated_tokens for s in t.steps) == 7


async def test_degenerate_output_continues_the_same_model_and_counts_all_tokens() -> None:
    def script(req: StepRequest) -> str:
        if req.prefill.endswith("---\n\n"):
            return "real step \\boxed{2}"
        return "---"

    eng, weak, _ = engine(script, ["s"])
    t = await eng.solve(P, parse_policy("weak"))
    assert len(t.steps) == 1 and t.steps[0].text == "---\n\nreal step \\boxed{2}"
    assert t.steps[0].calls == 2 and t.usage.weak.calls == 2
    assert t.usage.weak.generated_tokens == 1 + 3
    assert weak.requests[1].prefill == "Solution: ---\n\n"


async def test_budget_stops_regeneration_and_is_a_hard_cap() -> None:
    eng, _, strong = engine(["wrong a", "wrong b", "wrong c", "\\boxed{1}"], ["s1 s2 s3"], budget=5)
    t = await eng.solve(P, parse_policy("thr:0.5"))
    # first regeneration spends 3; the second is capped at 2 tokens, cut short, discarded; then no more
    assert t.strong_tokens == 5 and len(strong.requests) == 2 and strong.requests[1].max_tokens == 2
    assert [s.role for s in t.steps] == ["strong", "weak", "weak", "weak"]
    assert t.usage.strong.discarded_tokens == 2


async def test_weak_only_and_strong_only_skip_unneeded_calls() -> None:
    scorer = ScriptedScorer()
    eng, weak, strong = engine(["a", "\\boxed{2}"], ["s", "\\boxed{2}"], scorer=scorer)
    t = await eng.solve(P, parse_policy("weak"))
    assert scorer.calls == 0 and not strong.requests and all(s.role == "weak" for s in t.steps)
    weak.requests.clear()
    t = await eng.solve(P, parse_policy("strong"))
    assert scorer.calls == 0 and not weak.requests and all(s.role == "strong" for s in t.steps)
    assert t.escalations == 2 and t.usage.weak.calls == 0


async def test_seeds_depend_only_on_the_prefix() -> None:
    eng, weak, _ = engine(["a", "b", "\\boxed{1}"], ["s"], seed=7)
    await eng.solve(P, parse_policy("weak"))
    await eng.solve(P, parse_policy("weak"))
    seeds = [r.seed for r in weak.requests]
    assert seeds[:3] == seeds[3:] and len(set(seeds[:3])) == 3
    eng2, weak2, _ = engine(["a", "b", "\\boxed{1}"], ["s"], seed=8)
    await eng2.solve(P, parse_policy("weak"))
    assert [r.seed for r in weak2.requests] != seeds[:3]


async def test_problems_advance_independently_under_bounded_concurrency() -> None:
    in_flight = 0
    peak = 0

    class Slow:
        model = "slow"

        async def generate_step(self, request: StepRequest) -> Generation:
            nonlocal in_flight, peak
            in_flight += 1
            peak = max(peak, in_flight)
            slow = "slow problem" in request.messages[0].content
            await asyncio.sleep(0.2 if slow else 0.001)
            in_flight -= 1
            return Generation("\\boxed{1}", 1, 1, __import__("trimroute").FinishReason.STOP)

        async def aclose(self) -> None:
            pass

    eng = Engine(Slow(), Slow(), None, EngineConfig(concurrency=4, backend_concurrency={"weak": 3}))
    problems = [Problem("slow", "slow problem")] + [Problem(str(i), "q") for i in range(20)]
    order = [t.problem.id async for t in eng.run(problems, parse_policy("weak"))]
    assert len(order) == 21 and order[-1] == "slow"  # the slow problem did not hold the others back
    assert peak <= 3


async def test_run_propagates_a_failure_and_cancels_the_rest() -> None:
    class Boom:
        model = "boom"

        async def generate_step(self, request: StepRequest) -> Generation:
            raise ConfigError("boom")

        async def aclose(self) -> None:
            pass

    eng = Engine(Boom(), Boom(), None)
    with pytest.raises(ConfigError, match="boom"):
        async for _ in eng.run([Problem(str(i), "q") for i in range(5)], parse_policy("weak")):
            pass


async def test_bad_scorer_answers_are_errors() -> None:
    class Short:
        name = "short"

        async def score(self, problem, steps):
            return Scores((0.5,) * (len(steps) - 1))

        async def aclose(self) -> None:
            pass

    eng = Engine(ScriptedGenerator("w", ["a", "b"]), ScriptedGenerator("s", ["x"]), Short())
    with pytest.raises(ScorerError, match="returned 0 scores for 1 steps"):
        await eng.solve(P, parse_policy("thr:0.5"))
    eng = Engine(ScriptedGenerator("w", ["a"]), ScriptedGenerator("s", ["x"]), None)
    with pytest.raises(ConfigError, match="needs a step scorer"):
        await eng.solve(P, parse_policy("thr:0.5"))


async def test_observation_carries_history_for_stateful_policies() -> None:
    seen = []

    class Spy:
        name = "spy"
        fixed_action = None
        needs_scores = True

        def decide(self, obs):
            seen.append(obs)
            return Action.REGENERATE if obs.step_index == 1 else Action.CONTINUE

    eng, _, _ = engine(["a b", "c", "d \\boxed{1}"], ["s t u"], budget=100)
    await eng.solve(P, Spy())
    last = seen[-1]
    assert last.step_index == 2 and last.actions == (Action.CONTINUE, Action.REGENERATE)
    assert last.step_tokens == (2, 3, 2) and last.strong_tokens_spent == 3 and last.budget_left == 97
    assert last.is_final and last.min_prev_score == pytest.approx(0.9)


def test_engine_config_validation() -> None:
    with pytest.raises(ConfigError, match="max_steps"):
        EngineConfig(max_steps=0)
    with pytest.raises(ConfigError, match="budget"):
        EngineConfig(budget=-1)
    with pytest.raises(ConfigError, match="backend_concurrency"):
        EngineConfig(backend_concurrency={"judge": 2})


async def test_twins_share_the_limits_and_close_the_backends_once() -> None:
    closes: list[str] = []

    class Closing(ScriptedGenerator):
        async def aclose(self) -> None:
            closes.append(self.model)

    base = Engine(Closing("w", ["x"]), Closing("s", ["y"]), ScriptedScorer(), EngineConfig(concurrency=1))
    wrapped = base.wrapped(lambda role, g: g, lambda s: s).with_config(EngineConfig(max_steps=2))
    assert wrapped._limit("weak") is base._limit("weak")  # every caller queues on the same bound
    assert wrapped.config.max_steps == 2 and base.config.max_steps == 30
    await wrapped.aclose()
    await base.aclose()
    assert sorted(closes) == ["s", "w"]


async def test_a_degenerate_step_is_retried_once_by_default_as_in_the_official_code() -> None:
    eng, weak, _ = engine(lambda req: "---", ["s"], max_steps=1)
    t = await eng.solve(P, parse_policy("weak"))
    assert t.steps[0].calls == 2 and len(weak.requests) == 2
