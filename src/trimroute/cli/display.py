"""Terminal rendering shared by the commands: routed steps, and a sweep's progress with one problem live.

Model, problem and error text is always printed verbatim (``rich.text.Text``): LaTeX ``\\[ x \\]`` or a
stray ``[/b]`` must not be read as rich markup.
"""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from trimroute.eval.sweep import SweepProgress
from trimroute.types import Action, Problem, Step

__all__ = ["RichSweepProgress", "print_step"]

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
    header = Text(step.role, style=f"bold {style}")
    header.append(note, style="dim")
    console.print(header)
    console.print(Text(step.text + "\n", style=style))


class RichSweepProgress(SweepProgress):
    """One bar for the whole sweep and one for the point running now (both with ETA); the live problem's
    steps are printed above the bars as they are accepted."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress = Progress(
            TextColumn("{task.description:<22}"),
            BarColumn(bar_width=24),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=console,
        )
        self.overall: TaskID = self.progress.add_task("all points", total=0)
        self.current: TaskID | None = None

    def __enter__(self) -> RichSweepProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def point(self, name: str, total: int, done: int) -> None:
        if self.current is not None:
            self.progress.remove_task(self.current)
        self.current = self.progress.add_task(name[:22], total=total, completed=done)
        self.progress.advance(self.overall, done)

    def advance(self) -> None:
        if self.current is not None:
            self.progress.advance(self.current)
        self.progress.advance(self.overall)

    def grow(self, extra: int) -> None:
        total = self.progress.tasks[self.overall].total or 0
        self.progress.update(self.overall, total=total + extra)

    def live(self, point: str, problem: Problem, why: str) -> None:
        self.console.rule(Text(f"{point}, live on problem {problem.id}"), style="dim")
        self.console.print(Text(f"picked: {why}", style="dim"))
        self.console.print(Text(problem.text + "\n", style="bold"))

    def step(self, problem: Problem, step: Step) -> None:
        print_step(self.console, step)
