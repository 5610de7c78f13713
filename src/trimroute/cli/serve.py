"""``trim serve``: TRIM routers behind an OpenAI-compatible endpoint (uvicorn)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Annotated

import typer

from trimroute.cli import app
from trimroute.cli.common import console, handle_errors
from trimroute.errors import ConfigError


@app.command()
def serve(
    config: Annotated[Path, typer.Option("--config", "-c", help="YAML/TOML file: weak, strong, scorer, engine, serve")],
    host: Annotated[str, typer.Option(help="interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8000,
    workers: Annotated[int, typer.Option(help="worker processes (each with its own backends and metrics)")] = 1,
    log_level: Annotated[str, typer.Option(help="debug, info, warning, error")] = "info",
) -> None:
    """Serve step-level routing as an OpenAI API: POST /v1/chat/completions with model trim-thr-0.7, weak, ..."""
    with handle_errors():
        try:
            import uvicorn

            from trimroute.serve.app import CONFIG_ENV, create_app
            from trimroute.serve.logs import configure_logging
            from trimroute.serve.settings import load_server_config
        except ImportError as e:
            raise ConfigError(
                f"trim serve needs the serve extra ({e.name} is missing): pip install 'trimroute[serve]'"
            ) from None
        if workers < 1:
            raise ConfigError(f"--workers must be >= 1, got {workers}")
        configure_logging(log_level)
        # build the app here, so a bad config fails in one line before uvicorn starts
        server_app = create_app(load_server_config(config))
    os.environ[CONFIG_ENV] = str(config.resolve())
    os.environ["TRIM_SERVE_LOG_LEVEL"] = log_level
    routers = ", ".join(server_app.state.handler.routers.names())
    console.print(f"TRIM on http://{host}:{port}/v1 — models: {routers}, or trim-<policy>-<value>", highlight=False)
    if workers == 1:
        uvicorn.run(server_app, host=host, port=port, log_level=log_level)
        return
    asyncio.run(server_app.state.handler.aclose())  # each worker builds its own from the same file
    uvicorn.run(
        "trimroute.serve.app:create_app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=log_level,
    )
