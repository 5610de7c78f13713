"""Structured (one JSON object per line) logs of the server. Prompts and answers appear only with
``serve.log_prompts``; API keys never do."""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

__all__ = ["JsonFormatter", "configure_logging", "logger"]

logger = logging.getLogger("trimroute.serve")


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "event", ...fields}``: the fields come from ``extra={"fields": {...}}``."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {"ts": self.formatTime(record), "level": record.levelname.lower()}
        data["event"] = record.getMessage()
        data.update(getattr(record, "fields", {}))
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False, default=str)


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to the current ``sys.stderr`` (which CLI test runners swap), not the one at set-up."""

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def configure_logging(level: str = "info") -> None:
    """Send the server's log to stderr as JSON lines (idempotent: one handler per process)."""
    logger.setLevel(level.upper())
    logger.propagate = False
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(JsonFormatter())
        logger.addHandler(handler)
