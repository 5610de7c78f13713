"""``trim serve``: step-level routing behind the OpenAI API (chat and text completions, streaming,
``/v1/models``, ``/health``, ``/metrics``). Needs the ``serve`` extra (FastAPI, uvicorn, prometheus-client)."""

from trimroute.serve.app import create_app
from trimroute.serve.backends import Backends
from trimroute.serve.settings import ServerConfig, ServeSettings, load_server_config

__all__ = ["Backends", "ServeSettings", "ServerConfig", "create_app", "load_server_config"]
