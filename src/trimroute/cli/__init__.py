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
from trimroute.cli import run  # noqa: E402,F401
from trimroute.cli import serve  # noqa: E402,F401
from trimroute.cli import train  # noqa: E402,F401
from trimroute.cli import demo  # noqa: E402,F401
from trimroute.cli import models  # noqa: E402,F401
from trimroute.cli import eval  # noqa: E402,F401
from trimroute.cli import report  # noqa: E402,F401
from trimroute.cli import grade  # noqa: E402,F401
from trimroute.cli import pomdp  # noqa: E402,F401
from trimroute.cli import fit  # noqa: E402,F401


def main() -> None:
    app()
