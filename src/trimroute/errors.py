"""Errors raised by trimroute.

One tree; the type says whether retrying can help::

    TrimError
    ├── ConfigError            bad configuration or arguments (fix the input)
    ├── DataError              malformed dataset / file (fix the file)
    ├── ArtifactError          a saved policy or preset that cannot be used
    ├── ScorerError            a scorer answered something unusable (e.g. too few scores)
    └── BackendError           a model server failed
        ├── ModelNotFoundError     the server does not serve that model (not retryable)
        ├── BackendRequestError    4xx other than 404/408/429 (not retryable)
        └── RetryableBackendError  worth retrying with backoff
            ├── BackendUnavailableError  connection refused / reset, 5xx, 429
            └── BackendTimeoutError      the server did not answer in time

Retries live in the backend layer; HTTP status mapping for the server lives in ``serve``.
"""

from __future__ import annotations


class TrimError(Exception):
    """Base of every error raised on purpose by trimroute."""


class ConfigError(TrimError, ValueError):
    """Invalid configuration, option or argument."""


class DataError(TrimError, ValueError):
    """A dataset, trajectory file or record that cannot be read."""


class ArtifactError(TrimError):
    """A saved artifact (policy, preset, table) that cannot be loaded or does not fit."""


class ScorerError(TrimError):
    """A step scorer returned something that cannot be used."""


class BackendError(TrimError):
    """A model backend failed. ``role`` says which one (weak, strong, scorer) when known."""

    def __init__(self, message: str, *, role: str | None = None) -> None:
        super().__init__(message)
        self.role = role


class ModelNotFoundError(BackendError):
    """The endpoint does not serve the requested model."""


class BackendRequestError(BackendError):
    """The endpoint rejected the request (4xx); retrying will not help."""


class RetryableBackendError(BackendError):
    """A transient failure; the backend layer retries these with backoff."""


class BackendUnavailableError(RetryableBackendError):
    """Connection failed, or the server answered 429 / 5xx."""


class BackendTimeoutError(RetryableBackendError):
    """The server did not answer within the timeout."""
