"""One HTTP endpoint of a model server: JSON POSTs with timeouts, bounded retries and error mapping.

Shared by the OpenAI-compatible generator and the HTTP scorers, so that every backend maps failures
onto the ``BackendError`` tree the same way (DESIGN.md §3, STYLE.md §9: retries live in the backend layer):

- connection refused / reset            -> ``BackendUnavailableError`` "cannot reach URL (is the server running?)"
- no answer within ``timeout_s``        -> ``BackendTimeoutError``
- 429 and 5xx                           -> ``BackendUnavailableError``
- a model the server does not serve     -> ``ModelNotFoundError`` listing the served models
- any other 4xx                         -> ``BackendRequestError`` with the server's message

Retryable errors are retried ``max_retries`` times with exponential backoff (``backoff_s * 2**attempt``,
or the server's ``Retry-After`` when it gives one, capped at ``max_backoff_s``).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import httpx

from trimroute.errors import (
    BackendError,
    BackendRequestError,
    BackendTimeoutError,
    BackendUnavailableError,
    ConfigError,
    ModelNotFoundError,
    RetryableBackendError,
)

if TYPE_CHECKING:
    from trimroute.config import BackendConfig, ScorerConfig

__all__ = ["Endpoint"]


class Endpoint:
    """An HTTP JSON API rooted at ``base_url`` (e.g. ``http://host:8000/v1``).

    Args:
        base_url: root URL; paths given to ``post`` are appended to it.
        model: the model every request names; checked once against ``GET {models_url}`` before the
            first request, so a typo fails fast with the list of served models.
        api_key_env: environment variable holding the API key (unset is fine for local servers).
        transport: an ``httpx`` transport (tests pass ``httpx.MockTransport``).
    """

    def __init__(
        self,
        base_url: str | None,
        model: str,
        *,
        api_key_env: str | None = None,
        timeout_s: float = 120.0,
        max_retries: int = 4,
        backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
        models_url: str = "/models",
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if not base_url:
            raise ConfigError("base_url is required for an HTTP backend, e.g. http://127.0.0.1:8000/v1")
        if not base_url.startswith(("http://", "https://")):
            raise ConfigError(f"base_url must start with http:// or https://, got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.timeout_s = timeout_s
        self._models_url = models_url
        self._model_checked = False
        self._check_lock = asyncio.Lock()
        headers = {}
        key = os.environ.get(api_key_env) if api_key_env else None
        if key:
            headers["Authorization"] = f"Bearer {key}"
        # calls in flight are bounded by engine.backend_concurrency; httpx's default pool (100 connections,
        # 20 kept alive) would add a hidden second bound and reconnect per call above 20
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
        self._client = httpx.AsyncClient(
            base_url=self.base_url, headers=headers, timeout=timeout_s, transport=transport, limits=limits
        )

    @classmethod
    def from_config(
        cls,
        config: BackendConfig | ScorerConfig,
        *,
        base_url: str | None = None,
        models_url: str = "/models",
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> Endpoint:
        """The endpoint a backend's config describes (``base_url`` overrides the config's)."""
        return cls(
            base_url if base_url is not None else config.base_url,
            config.model,
            api_key_env=config.api_key_env,
            timeout_s=config.timeout_s,
            max_retries=config.max_retries,
            backoff_s=float(config.options.get("backoff_s", 0.5)),
            models_url=models_url,
            transport=transport,
        )

    def url(self, path: str) -> str:
        """``base_url + path``; an absolute URL (another path on the same server) is taken as it is."""
        return path if path.startswith(("http://", "https://")) else self.base_url + path

    async def post(self, path: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        """POST ``payload`` as JSON and return the JSON answer, retrying transient failures."""
        await self.check_model()
        return await self._with_retries("POST", path, payload)

    async def get(self, path: str) -> dict[str, Any]:
        return await self._with_retries("GET", path, None)

    async def served_models(self) -> list[str]:
        data = await self.get(self._models_url)
        return [str(m.get("id")) for m in data.get("data", []) if isinstance(m, Mapping)]

    async def aclose(self) -> None:
        await self._client.aclose()

    async def check_model(self) -> None:
        """Fail with ``ModelNotFoundError`` (listing the served models) if the server does not serve ``model``;
        asked once."""
        if self._model_checked or not self.model:
            return
        async with self._check_lock:
            if self._model_checked:
                return
            try:
                served = await self.served_models()
            except BackendRequestError:
                served = []  # the server has no model list (404): nothing to check against
            if served and self.model not in served:
                raise ModelNotFoundError(
                    f"{self.base_url} does not serve model {self.model!r}; served: {', '.join(served)}"
                )
            self._model_checked = True

    async def _with_retries(self, method: str, path: str, payload: Mapping[str, Any] | None) -> dict[str, Any]:
        attempt = 0
        while True:
            try:
                return await self._once(method, path, payload)
            except RetryableBackendError as e:
                if attempt >= self.max_retries:
                    if self.max_retries:
                        e.args = (f"{e} (gave up after {attempt + 1} attempts)",)
                    raise
                delay = e.retry_after if isinstance(e, _ServerBusy) and e.retry_after is not None else None
                if delay is None:
                    delay = self.backoff_s * 2**attempt
                await asyncio.sleep(min(delay, self.max_backoff_s))
                attempt += 1

    async def _once(self, method: str, path: str, payload: Mapping[str, Any] | None) -> dict[str, Any]:
        url = self.url(path)
        try:
            response = await self._client.request(method, url, json=payload)
        except httpx.TimeoutException:
            raise BackendTimeoutError(
                f"{url} did not answer within {self.timeout_s:g}s (is the server overloaded? raise timeout_s)"
            ) from None
        except httpx.TransportError as e:
            raise BackendUnavailableError(f"cannot reach {url} (is the server running?): {e}") from None
        if response.status_code == 200:
            try:
                data = response.json()
            except ValueError:
                raise BackendError(f"{url} answered with something that is not JSON: {response.text[:200]!r}") from None
            if not isinstance(data, dict):
                raise BackendError(f"{url} answered a JSON {type(data).__name__}, expected an object")
            return data
        message = _error_message(response)
        status = response.status_code
        if status == 429 or status >= 500:
            raise _ServerBusy(f"{url} answered {status}: {message}", _retry_after(response))
        if status == 408:
            raise BackendTimeoutError(f"{url} answered 408 (request timeout): {message}")
        if status == 404 and "model" in message.lower() and self.model:
            served = await self._served_or_empty()
            listing = f"; served: {', '.join(served)}" if served else ""
            raise ModelNotFoundError(f"{self.base_url} does not serve model {self.model!r}{listing}")
        if status == 404:
            raise BackendRequestError(f"{url} not found (404): is {self.base_url} the right base URL? {message}")
        if status in (401, 403):
            raise BackendRequestError(f"{url} refused the request ({status}): check the API key ({message})")
        raise BackendRequestError(f"{url} rejected the request ({status}): {message}")

    async def _served_or_empty(self) -> list[str]:
        try:
            return await self.served_models()
        except BackendError:
            return []


class _ServerBusy(BackendUnavailableError):
    """429 / 5xx, carrying the server's ``Retry-After`` (seconds) when it sent one."""

    def __init__(self, message: str, retry_after: float | None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def _error_message(response: httpx.Response) -> str:
    """The server's error text: OpenAI envelope ``{"error": {"message"}}``, FastAPI ``detail``, or raw text."""
    try:
        data = response.json()
    except ValueError:
        return response.text.strip()[:300] or response.reason_phrase
    if isinstance(data, Mapping):
        err = data.get("error")
        if isinstance(err, Mapping) and err.get("message"):
            return str(err["message"])
        if isinstance(err, str):
            return err
        for key in ("message", "detail"):
            if data.get(key):
                return str(data[key])[:300]
    return str(data)[:300]


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None  # an HTTP date: fall back to exponential backoff
