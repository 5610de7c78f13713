"""``trim serve``: TRIM routers behind an OpenAI-compatible endpoint (uvicorn, or Ray Serve with ``--ray``)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from trimroute.cli import app
from trimroute.cli.common import console, handle_errors
from trimroute.errors import ConfigError

if TYPE_CHECKING:
    from trimroute.serve.settings import ServerConfig


@app.command()
def serve(
    config: Annotated[Path, typer.Option("--config", "-c", help="YAML/TOML file: weak, strong, scorer, engine, serve")],
    host: Annotated[str, typer.Option(help="interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8000,
    workers: Annotated[int, typer.Option(help="worker processes (each with its own backends and metrics)")] = 1,
    log_level: Annotated[str, typer.Option(help="debug, info, warning, error")] = "info",
    ray: Annotated[
        str | None,
        typer.Option("--ray", metavar="ADDRESS", help="run on Ray Serve: auto (the running cluster), local, host:port"),
    ] = None,
    replicas: Annotated[
        int | None, typer.Option(help="with --ray: copies of the app, each with its own backends")
    ] = None,
    autoscale: Annotated[
        str | None, typer.Option(metavar="MIN:MAX", help="with --ray: autoscale the replicas between MIN and MAX")
    ] = None,
) -> None:
    """Serve step-level routing as an OpenAI API: POST /v1/chat/completions with model trim-thr-0.7, weak, ..."""
    if ray is not None:
        with handle_errors():
            if workers != 1:
                raise ConfigError("--workers is for uvicorn; on Ray use --replicas or --autoscale")
            _serve_on_ray(config, ray, replicas, autoscale, host, port, log_level)
        return
    with handle_errors():
        if replicas is not None or autoscale is not None:
            raise ConfigError("--replicas and --autoscale need --ray ADDRESS (auto, local or host:port)")
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


def _serve_on_ray(
    config: Path, address: str, replicas: int | None, autoscale: str | None, host: str, port: int, log_level: str
) -> None:
    """Deploy the app on Ray Serve and stay attached until interrupted; the application is deleted then."""
    from trimroute.config import load_file
    from trimroute.serve.app import create_app
    from trimroute.serve.scaling import parse_autoscale, replica_scaling
    from trimroute.serve.settings import ServerConfig

    if replicas is not None and autoscale is not None:
        raise ConfigError("give --replicas N or --autoscale MIN:MAX, not both")
    bounds = None if autoscale is None else parse_autoscale(autoscale)
    mapping = load_file(config)
    server = ServerConfig.from_mapping(mapping)
    count = 1 if replicas is None else replicas
    replica_scaling(count, bounds, server.serve.max_pending)  # bad flags fail before Ray is reached
    probe = create_app(server)  # and so does a bad router spec
    routers = ", ".join(probe.state.handler.routers.names())
    asyncio.run(probe.state.handler.aclose())
    try:
        import ray
        from ray import serve

        from trimroute.serve.ray_serve import APP_NAME, application
    except ImportError as e:
        raise ConfigError(
            f"trim serve --ray needs the ray extra ({e.name} is missing): pip install 'trimroute[ray]'"
        ) from None
    app = application(mapping, replicas=count, autoscale=bounds, env=_secrets(server), log_level=log_level)
    ray.init(address=address, log_to_driver=False)
    signal.signal(signal.SIGTERM, _exit_once)  # a plain kill deletes the application too
    try:
        # one HTTP proxy, on the head node at --host:--port (a Serve config file can put one on every node)
        serve.start(http_options={"host": host, "port": port}, proxy_location="HeadOnly")
        serve.run(app, name=APP_NAME, route_prefix="/")
        scale = f"autoscaled {autoscale}" if autoscale else f"{count} replica(s)"
        console.print(f"TRIM on Ray Serve at http://{host}:{port}/v1 ({scale}) — models: {routers}", highlight=False)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # let the clean-up finish
        if address == "local":
            serve.shutdown()  # our own cluster: everything goes
        else:
            serve.delete(APP_NAME)  # someone else's: only our application
        ray.shutdown()


def _exit_once(signum: int, frame: object) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sys.exit(0)


def _secrets(server: ServerConfig) -> dict[str, str]:
    """The environment variables the config names for keys (API keys, backend keys) that are set here:
    the replicas may run on other machines, with other environments."""
    run = server.run
    names = {server.serve.api_keys_env, run.weak.api_key_env, run.strong.api_key_env, run.scorer.api_key_env}
    return {name: os.environ[name] for name in names if name and name in os.environ}
