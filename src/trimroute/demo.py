"""``trim demo``: TRIM routing real steps between two real models on a plain CPU, offline — a recipe of
``trim eval``, not a second harness.

The recipe is a run config (the catalog's CPU pair in-process with llama.cpp, a PRM-free scorer, step caps
short enough for a first result in minutes on two cores), a method list (weak-only,
strong-only, TRIM-Thr at a quantile of the weak steps' scores, random step routing at the same budget) and
``trim eval --live``'s stream of one problem on which TRIM-Thr regenerates a step. Everything else — the
run directory, resuming, the call cache, the metrics, the tables, the plot — is ``trim eval``'s.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from trimroute.config import BackendConfig, EngineConfig, RunConfig, ScorerConfig
from trimroute.errors import ConfigError
from trimroute.policies import final_modifier
from trimroute.scorers.composite import LogisticModel

__all__ = ["DEFAULTS", "demo_config", "demo_methods"]

# The defaults of ``trim demo``: a small, fast sample (the README gives the 100-problem command and result).
DEFAULTS: dict[str, Any] = {
    "weak": "qwen2.5-coder-0.5b-instruct",
    "strong": "qwen2.5-coder-1.5b-instruct",
    "scorer": "likelihood",
    "dataset": "gsm8k-offline",
    "n": 2,
    "quantiles": (0.15,),
    # the strong model writes long first steps: below 256 tokens strong-only is cut short and fails
    "max_steps": 16,
    "max_step_tokens": 256,
    "max_solution_tokens": 640,
    # random:matched's search for p: one pilot (p = the thr point's share of strong-only's tokens) keeps the
    # first run short; the table says whether that budget is within ±2 % (trim eval's default searches 6)
    "budget_pilots": 1,
}


def _scorer_config(spec: str, strong: str, n_ctx: int, threads: int | None) -> ScorerConfig:
    kind, _, arg = spec.partition(":")
    model_options: dict[str, Any] = {"n_ctx": n_ctx, **({"n_threads": threads} if threads else {})}
    if kind == "likelihood":
        return ScorerConfig(kind=kind, model=strong, options={**model_options, **({"statistic": arg} if arg else {})})
    if kind == "confidence":
        return ScorerConfig(kind=kind, options={"statistic": arg} if arg else {})
    if kind == "composite":
        return ScorerConfig(kind=kind, model=strong, options={"artifact": arg, **model_options})
    if arg:
        raise ConfigError(f"scorer {kind!r} takes no value, got {spec!r}")
    return ScorerConfig(kind=kind)


def demo_config(
    *,
    weak: str = DEFAULTS["weak"],
    strong: str = DEFAULTS["strong"],
    scorer: str = DEFAULTS["scorer"],
    seed: int = 0,
    threads: int | None = None,
    n_ctx: int = 2048,
    max_steps: int = DEFAULTS["max_steps"],
    max_step_tokens: int = DEFAULTS["max_step_tokens"],
    max_solution_tokens: int = DEFAULTS["max_solution_tokens"],
) -> RunConfig:
    """The demo's run config: ``weak``/``strong`` are catalog names (``trim models list``) or .gguf paths.

    ``threads`` defaults to every core: llama-cpp-python's own default is half of them (it assumes
    hyper-threads), and on a 2-core machine one thread decodes 1.7× slower than two (10.8 vs 18.7 tokens/s,
    Qwen2.5-Coder-0.5B)."""
    threads = threads or os.cpu_count()
    scorer_config = _scorer_config(scorer, strong, n_ctx, threads)
    # the weak model's own log-probabilities only where a confidence feature reads them: in-process llama.cpp
    # generates far slower with logits_all (about 2 against 18 weak steps a minute, measured on the demo pair)
    weak_logprobs = scorer_config.kind == "confidence" or (
        scorer_config.kind == "composite"
        and any(c.startswith("confidence") for c in LogisticModel.load(scorer_config.options["artifact"]).components)
    )

    def backend(model: str, logprobs: bool) -> BackendConfig:
        options: dict[str, Any] = {"n_ctx": n_ctx, **({"n_threads": threads} if threads else {})}
        if logprobs:
            options["logits_all"] = True
        # ChatML is the Qwen2.5-Coder GGUFs' own template minus its default system turn: what was measured
        return BackendConfig(kind="llamacpp", model=model, chat_template="chatml", options=options)

    return RunConfig(
        weak=backend(weak, weak_logprobs),
        strong=backend(strong, False),
        scorer=scorer_config,
        policy="weak",
        engine=EngineConfig(
            max_steps=max_steps,
            max_step_tokens=max_step_tokens,
            max_solution_tokens=max_solution_tokens,
            seed=seed,
            # one problem at a time: in-process llama.cpp keeps one KV cache per model, and the next step of
            # the same problem reuses it; on 2 cores there is nothing to gain from interleaving problems
            concurrency=1,
            weak_logprobs=weak_logprobs,
            # one in-process model runs one call at a time: a speculative step would only queue in front
            speculate=False,
            # the prompt format of the demo's published measurements (docs/cpu.md); maths runs elsewhere
            # default to the official release's (``official``)
            prompt="trim-v0",
        ),
    )


def demo_methods(
    thresholds: Sequence[float] | None,
    quantiles: Sequence[float] = DEFAULTS["quantiles"],
    random: bool = True,
    keep_final: bool = False,
) -> str:
    """The demo's ``--methods``: TRIM-Thr at ``thresholds`` (default: those quantiles of the weak steps'
    scores; ``keep_final``, which needs thresholds: never rewriting the answer step) and, with ``random``,
    random step routing at each one's budget (and its ``keep_final`` control; weak and strong are always in)."""
    if thresholds is not None:
        thr = "thr:" + ",".join(f"{k:g}" for k in thresholds) + final_modifier(keep_final)
    elif keep_final:
        raise ConfigError("keep-final TRIM-Thr needs absolute thresholds (quantile thresholds score every step)")
    else:
        thr = "thr:quantile=" + ",".join(f"{q:g}" for q in quantiles)
    randoms = " random:matched" + (f" random:matched{final_modifier(True)}" if keep_final else "")
    return thr + (randoms if random else "")
