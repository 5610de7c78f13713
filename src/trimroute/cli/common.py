"""Shared CLI plumbing: one-line errors with a non-zero exit, the console."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import typer
from rich.console import Console
from rich.text import Text

from trimroute.errors import ConfigError, TrimError

console = Console()
err_console = Console(stderr=True)


@contextlib.contextmanager
def handle_errors() -> Iterator[None]:
    """Turn a ``TrimError`` into ``error: <message>`` on stderr and exit code 1 (2 for bad usage)."""
    try:
        yield
    except TrimError as e:
        # verbatim: a message naming `trimroute[data]` or model text must not be read as rich markup
        err_console.print(Text("error: ", style="bold red").append(str(e)), highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted[/]: finished work is saved; rerun the same command to resume")
        raise typer.Exit(130) from None


def numbers_option(flag: str, first: list[float], extra: list[str]) -> list[float]:
    """``--lam 8e-4 5e-4``: typer takes one value per option; the rest arrive as extra arguments."""
    values = list(first)
    for item in extra:
        try:
            values.append(float(item))
        except ValueError:
            raise ConfigError(f"unexpected argument {item!r}; {flag} takes numbers (e.g. {flag} 8e-4 5e-4)") from None
    return values
