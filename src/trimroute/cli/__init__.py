"""The ``trim`` command: thin subcommands over library functions (one module per command)."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="trim",
    help="TRIM: targeted step-level routing between a weak and a strong LLM.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

# Each module registers its commands on ``app``.
# Listed in the order `trim --help` shows them.
from trimroute.cli import run, eval, grade, report, demo, models, pomdp, fit, train, serve  # noqa: E402,F401,I001


def main() -> None:
    app()
