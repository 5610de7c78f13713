"""Golden test: the engine sends the official TRIM prompt byte for byte on both routes (DESIGN.md §4).

The expected text is built here from the rule of the official release, not by the code under test:
user = SYSTEM_PROMPT + "\\nQuestion: " + question; the assistant pre-fill is "Solution:\\n\\n" before the
first step and "Solution: " + "\\n\\n".join(steps) + "\\n\\n" after; Qwen2.5's template adds its default
system turn when there is no system message.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from trimroute.config import BackendConfig
from trimroute.engine import Engine
from trimroute.generators.openai_compat import OpenAIGenerator
from trimroute.policies import parse_policy
from trimroute.types import Problem

SYSTEM_PROMPT = (
    "Solve the following math problem step by step, given in LaTeX format, clearly and concisely, and present "
    "the final answer as \\boxed{{X}}, where X is the fully simplified solution."
)
QUESTION = "What is $1 + 2 + 3$?"
STEPS = ["First, $1 + 2 = 3$.", "Then $3 + 3 = 6$."]
QWEN_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."
# Qwen2.5-Instruct's chat template without its tool branches
QWEN25_TEMPLATE = (
    "{%- if messages[0]['role'] == 'system' %}{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}"
    "{%- else %}{{- '<|im_start|>system\\n" + QWEN_SYSTEM + "<|im_end|>\\n' }}{%- endif %}"
    "{%- for message in messages %}{%- if not (message.role == 'system' and loop.first) %}"
    "{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}{%- endif %}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


def expected_chat(steps: list[str]) -> list[dict[str, str]]:
    assistant = "Solution: " + "\n\n".join(steps) + "\n\n" if steps else "Solution:\n\n"
    return [
        {"role": "user", "content": SYSTEM_PROMPT + "\nQuestion: " + QUESTION},
        {"role": "assistant", "content": assistant},
    ]


def expected_text(steps: list[str]) -> str:
    user, assistant = (m["content"] for m in expected_chat(steps))
    return (
        f"<|im_start|>system\n{QWEN_SYSTEM}<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n"
        f"<|im_start|>assistant\n{assistant}"
    )


async def bodies_sent(api: str, template: Path) -> list[dict]:
    """Route one problem weak-only through a scripted server; return the request bodies it received."""
    bodies: list[dict] = []
    answers = iter([*STEPS, "So the answer is $\\boxed{6}$."])

    def server(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/models"):
            return httpx.Response(200, json={"data": [{"id": "qwen"}]})
        bodies.append(json.loads(request.content))
        text = next(answers)
        choice = {"text": text} if api == "completions" else {"message": {"role": "assistant", "content": text}}
        usage = {"prompt_tokens": 10, "completion_tokens": 5}
        return httpx.Response(
            200, json={"choices": [{**choice, "finish_reason": "stop", "stop_reason": "\n\n"}], "usage": usage}
        )

    config = BackendConfig(model="qwen", base_url="http://test/v1", api=api, chat_template=str(template))
    gen = OpenAIGenerator(config, transport=httpx.MockTransport(server))
    engine = Engine(gen, gen)
    await engine.solve(Problem("golden", QUESTION), parse_policy("weak"))
    await engine.aclose()
    return bodies


async def test_the_completions_route_sends_the_official_prompt_rendered_by_the_model_template(tmp_path: Path) -> None:
    template = tmp_path / "chat_template.jinja"
    template.write_text(QWEN25_TEMPLATE)
    bodies = await bodies_sent("completions", template)
    assert [b["prompt"] for b in bodies] == [expected_text(STEPS[:k]) for k in range(3)]
    assert all(b["stop"] == ["\n\n"] for b in bodies)


async def test_the_chat_route_sends_the_official_messages(tmp_path: Path) -> None:
    template = tmp_path / "chat_template.jinja"
    template.write_text(QWEN25_TEMPLATE)
    bodies = await bodies_sent("chat", template)
    assert [b["messages"] for b in bodies] == [expected_chat(STEPS[:k]) for k in range(3)]
    assert all(b["continue_final_message"] is True and b["add_generation_prompt"] is False for b in bodies)
