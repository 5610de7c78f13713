"""HTTP mapping of errors, in one place: OpenAI error envelopes ``{"error": {message, type, param, code}}``.

==============================  ======  ==================================================
error                           status  meaning for the client
==============================  ======  ==================================================
bad request / limits            400     fix the request
missing or wrong API key        401     send ``Authorization: Bearer <key>``
unknown model (router)          404     the message lists the served models
body too large                  413     send less
``BackendTimeoutError``, own    504     the backend (``role``) or the request took too long
request timeout
other ``BackendError``,         502     the backend of ``role`` is down or answered garbage;
``ScorerError``                         retry later
server at ``max_pending``       503     retry later (``Retry-After``)
==============================  ======  ==================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from trimroute.errors import (
    ArtifactError,
    BackendError,
    BackendTimeoutError,
    ConfigError,
    DataError,
    ScorerError,
    TrimError,
)

__all__ = ["ApiError", "to_api_error"]


@dataclass
class ApiError(Exception):
    """An error answered to the client as an OpenAI error envelope."""

    status: int
    message: str
    type: str = "invalid_request_error"
    code: str | None = None
    param: str | None = None
    role: str | None = None  # which backend failed (weak, strong, scorer)
    headers: dict[str, str] | None = None

    def __str__(self) -> str:
        return self.message

    def envelope(self) -> dict[str, Any]:
        error: dict[str, Any] = {"message": self.message, "type": self.type, "param": self.param, "code": self.code}
        if self.role is not None:
            error["role"] = self.role
        return {"error": error}


def to_api_error(error: BaseException) -> ApiError:
    """The client-facing form of any error raised while serving a request."""
    if isinstance(error, ApiError):
        return error
    if isinstance(error, BackendError | ScorerError):
        role = getattr(error, "role", None) or ("scorer" if isinstance(error, ScorerError) else None)
        who = f"{role} backend" if role else "a backend"
        if isinstance(error, BackendTimeoutError):
            return ApiError(
                504, f"{who} timed out: {error}", "backend_error", f"{role or 'backend'}_timeout", role=role
            )
        return ApiError(502, f"{who} failed: {error}", "backend_error", f"{role or 'backend'}_unavailable", role=role)
    if isinstance(error, ConfigError | DataError):
        return ApiError(400, str(error))
    if isinstance(error, ArtifactError | TrimError):
        return ApiError(500, f"the server cannot use its configuration: {error}", "server_error")
    return ApiError(500, "internal server error; see the server log", "server_error")
