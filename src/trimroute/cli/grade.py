"""``trim grade RUN...``: grade saved trajectories again, without calling any model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from trimroute.cli import app
from trimroute.cli.common import console, handle_errors
from trimroute.data.grading import regrade_file
from trimroute.errors import DataError


def _trajectory_files(paths: list[Path]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted(path.rglob("*.jsonl"))
            if not found:
                raise DataError(f"no trajectory files (*.jsonl) under {str(path)!r}")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            raise DataError(f"{str(path)!r} does not exist; pass a run directory or a trajectory JSONL file")
    return files


def _count_lines(path: Path) -> int:
    with path.open("rb") as f:
        return sum(1 for line in f if line.strip())


@app.command()
def grade(
    runs: Annotated[list[Path], typer.Argument(help="Run directories (every *.jsonl inside) or trajectory files.")],
    timeout: Annotated[float, typer.Option(help="Seconds allowed to verify one answer.")] = 5.0,
) -> None:
    """Grade saved trajectories again with math-verify and rewrite them in place (no model is called).

    Do not grade a run that is still writing its files.
    """
    with handle_errors():
        files = _trajectory_files(runs)
        table = Table()
        for col in ("file", "problems", "accuracy", "changed"):
            table.add_column(col, justify="left" if col == "file" else "right")
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
        with Progress(*columns, console=console, transient=True) as progress:
            overall = progress.add_task("grading", total=sum(_count_lines(f) for f in files))
            for path in files:
                progress.update(overall, description=path.name)
                count = regrade_file(path, timeout_s=timeout, on_trajectory=lambda: progress.advance(overall))
                accuracy = f"{count.correct / count.graded:.1%}" if count.graded else "no answers"
                table.add_row(str(path), str(count.n), accuracy, str(count.changed))
        console.print(table)
