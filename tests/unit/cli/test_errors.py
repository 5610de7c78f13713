"""CLI errors are one line, printed verbatim: text in brackets (an extra's name, model output) is kept."""

from __future__ import annotations

import typer
from typer.testing import CliRunner

from trimroute.cli.common import handle_errors
from trimroute.errors import ConfigError

app = typer.Typer()


@app.command()
def fail() -> None:
    with handle_errors():
        raise ConfigError("the dataset needs an extra: pip install 'trimroute[data]' ([bold]not markup[/bold])")


def test_an_error_with_brackets_is_printed_verbatim() -> None:
    result = CliRunner().invoke(app, [])
    assert result.exit_code == 1
    assert "error: the dataset needs an extra: pip install 'trimroute[data]' ([bold]not markup[/bold])" in " ".join(
        result.output.split()
    )
