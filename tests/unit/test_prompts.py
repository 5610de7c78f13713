from __future__ import annotations

import pytest

from trimroute import prompts
from trimroute.errors import ConfigError
from trimroute.types import Message, Problem


def test_the_trim_v0_format_is_kept_byte_exact() -> None:
    fmt = prompts.prompt_format("trim-v0")
    assert fmt.prefill([]) == "Solution:\n\n"
    assert fmt.prefill(["a", "b"]) == "Solution:\n\na\n\nb\n\n"
    msgs = prompts.messages(Problem("1", "Q?"), ["a"], fmt)
    assert msgs[0] == Message("user", fmt.instruction + "\n\nQ?")
    assert msgs[1] == Message("assistant", "Solution:\n\na\n\n")
    req = prompts.step_request(Problem("1", "Q?"), ["a"], max_tokens=5, seed=3, prompt=fmt)
    assert req.stop == ("\n\n",) and req.prefill.endswith("a\n\n") and req.n_steps == 1


def test_official_format_is_the_default_and_unknown_names_list_the_valid_ones() -> None:
    assert prompts.DEFAULT == "official" and prompts.messages(Problem("1", "Q?"), [])[-1].content == "Solution:\n\n"
    with pytest.raises(ConfigError, match="unknown prompt format 'v9'; valid: official, trim-v0"):
        prompts.prompt_format("v9")


def test_final_steps_are_detected_with_or_without_the_backslash() -> None:
    assert prompts.is_final("so \\boxed{4}") and prompts.is_final("so boxed{4}") and not prompts.is_final("boxed 4")


def test_render_chatml_leaves_the_assistant_turn_open() -> None:
    text = prompts.render_chatml(prompts.messages(Problem("1", "Q?"), []))
    assert text.startswith("<|im_start|>user\n")
    assert text.endswith("<|im_end|>\n<|im_start|>assistant\nSolution:\n\n")


@pytest.mark.parametrize(
    ("text", "degenerate"), [("", True), ("  \n", True), ("---", True), ("**.**", True), ("x", False), ("1.", False)]
)
def test_degenerate_steps(text: str, degenerate: bool) -> None:
    assert prompts.is_degenerate(text) is degenerate


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        ("so \\boxed{\\frac{1}{2}} done", "\\frac{1}{2}"),
        ("\\boxed{1} then \\boxed{ {2} }", "{2}"),
        ("The answer is 42.", "42"),
        ("we get 1,200 apples", "1200"),
        ("nothing here", None),
    ],
)
def test_extract_answer(text: str, answer: str | None) -> None:
    assert prompts.extract_answer(text) == answer
    assert prompts.is_final(text) is ("\\boxed{" in text)
