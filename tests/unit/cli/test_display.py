"""The shared step display prints model text verbatim, whatever brackets it holds."""

from __future__ import annotations

from rich.console import Console

from trimroute.cli.display import print_step
from trimroute.types import Action, Step


def test_latex_and_stray_markup_are_printed_verbatim() -> None:
    console = Console(record=True, width=200, color_system=None)
    text = r"\[ 12 \times 100 = 1200 \] then [/b] and [bold]x"
    print_step(console, Step(text, "strong", 9, score=0.31, action=Action.REGENERATE))
    out = console.export_text()
    assert text in out
    assert "weak step scored 0.31 → rewritten by strong" in out
