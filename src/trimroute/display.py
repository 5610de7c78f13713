"""Terminal rendering of routed steps, shared by ``trim run`` and ``trim demo``."""

from __future__ import annotations

from rich.console import Console
from rich.text import Text

from trimroute.types import Action, Step

ROLE_STYLE = {"weak": "cyan", "strong": "magenta"}


def print_step(console: Console, step: Step) -> None:
    """The step's author and the decision on it (score, kept or rewritten), then its text in the author's colour."""
    style = ROLE_STYLE[step.role]
    if step.score is None:
        note = ""
    elif step.action is Action.REGENERATE:
        note = f" (weak step scored {step.score:.2f} → rewritten by strong)"
    else:
        note = f" (score {step.score:.2f} → kept)"
    console.print(f"[bold {style}]{step.role}[/][dim]{note}[/]")
    # model text is shown verbatim: LaTeX "\[ x \]" or a stray "[/b]" must not be read as rich markup
    console.print(Text(step.text + "\n", style=style))
