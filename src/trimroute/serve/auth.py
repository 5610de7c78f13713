"""Bearer API keys, read from an environment variable and/or a file, compared in constant time."""

from __future__ import annotations

import hashlib
import hmac
import os
from pathlib import Path

from trimroute.errors import ConfigError
from trimroute.serve.errors import ApiError
from trimroute.serve.settings import ServeSettings

__all__ = ["ApiKeys", "load_api_keys"]


def load_api_keys(settings: ServeSettings) -> tuple[str, ...]:
    """Keys from ``api_keys_env`` (comma-separated) and ``api_keys_file`` (one per line, # comments)."""
    keys: list[str] = []
    if settings.api_keys_env:
        keys += [k.strip() for k in os.environ.get(settings.api_keys_env, "").split(",")]
    if settings.api_keys_file:
        path = Path(settings.api_keys_file)
        try:
            lines = path.read_text().splitlines()
        except OSError as e:
            raise ConfigError(f"serve.api_keys_file {str(path)!r} cannot be read: {e.strerror}") from None
        keys += [line.strip() for line in lines if not line.lstrip().startswith("#")]
    return tuple(k for k in keys if k)


class ApiKeys:
    """Checks ``Authorization: Bearer <key>``. No keys = every request is let in."""

    def __init__(self, keys: tuple[str, ...]) -> None:
        # digests have one length, so comparing them takes the same time whatever the key's length
        self._digests = tuple(_digest(k) for k in keys)

    @property
    def open(self) -> bool:
        return not self._digests

    def check(self, authorization: str | None) -> None:
        if self.open:
            return
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(401, "missing API key: send 'Authorization: Bearer <key>'", code="invalid_api_key")
        digest = _digest(token.strip())
        match = False
        for known in self._digests:  # no early exit: the time does not reveal which key matched
            match |= hmac.compare_digest(digest, known)
        if not match:
            raise ApiError(401, "invalid API key", code="invalid_api_key")


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()
