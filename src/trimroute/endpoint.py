"""The HTTP endpoint of one role's model server (one base URL or several replicas): JSON requests with
timeouts, bounded retries, failover between replicas and error mapping.

Shared by the OpenAI-compatible generator and the HTTP scorers, so that every backend maps failures
onto the ``BackendError`` tree the same way (DESIGN.md §3, STYLE.md §9: retries live in the backend layer):

- connection refused / reset            -> ``BackendUnavailableError`` "cannot reach URL (is the server running?)"
- no answer within ``timeout_s``        -> ``BackendTimeoutError``
- 429 and 5xx                           -> ``BackendUnavailableError``
- a model the server does not serve     -> ``ModelNotFoundError`` listing the served models
- any other 4xx                         -> ``BackendRequestError`` with the server's message

Retryable errors are retried ``max_retries`` times with exponential backoff (``backoff_s * 2**attempt``,
or the server's ``Retry-After`` when it gives one, capped at ``max_backoff_s``). With several replicas
(``trimroute.replicas`` picks one per request), a replica that cannot be reached is taken out of service
and the request goes to another at once, without spending an attempt; only the answer returned is ever
seen by the caller, so usage counts it once. A replica out of service is probed (``GET models_url``, which
also checks it still serves the model) in the background when its backoff is over.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping, Sequence
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
from trimroute.replicas import Replica, Replicas

if TYPE_CHECKING:
    from trimroute.config import BackendConfig, ScorerConfig

__all__ = ["Endpoint"]


class Endpoint:
    """An HTTP JSON API rooted at ``base_urls`` (e.g. ``http://host:8000/v1``), replicas of one server.

    Args:
        base_urls: one root URL, or several of replicas serving the same model; paths given to ``post`` are
            appended to the chosen one's (``trimroute.replicas`` says which).
        model: the model every request names; checked against ``GET {models_url}`` before a replica's first
            request, so a typo fails fast with the list of served models.
        api_key_env: environment variable holding the API key (unset is fine for local servers).
        affinity: keep the requests of one affinity key on one replica while it is healthy.
        transport: an ``httpx`` transport (tests pass ``httpx.MockTransport``).
    """

    def __init__(
        self,
        base_urls: Sequence[str],
        model: str,
        *,
        api_key_env: str | None = None,
        timeout_s: float = 120.0,
        max_retries: int = 4,
        backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
        models_url: str = "/models",
        affinity: bool = True,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if not base_urls or not all(base_urls):
            raise ConfigError("base_url is required for an HTTP backend, e.g. http://127.0.0.1:8000/v1")
        for url in base_urls:
            if not url.startswith(("http://", "https://")):
                raise ConfigError(f"base_url must start with http:// or https://, got {url!r}")
        self.replicas = Replicas(
            [u.rstrip("/") for u in base_urls], affinity=affinity, backoff_s=backoff_s, max_backoff_s=max_backoff_s
        )
        self.base_url = self.replicas.all[0].base_url
        self.model = model
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.timeout_s = timeout_s
        self._models_url = models_url
        self._check_locks = {r.base_url: asyncio.Lock() for r in self.replicas.all}
        self._probes: set[asyncio.Task[None]] = set()
        headers = {}
        key = os.environ.get(api_key_env) if api_key_env else None
        if key:
            headers["Authorization"] = f"Bearer {key}"
        # calls in flight are bounded by engine.backend_concurrency; httpx's default pool (100 connections,
        # 20 kept alive) would add a hidden second bound and reconnect per call above 20
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
        self._client = httpx.AsyncClient(headers=headers, timeout=timeout_s, transport=transport, limits=limits)

    @classmethod
    def from_config(
        cls,
        config: BackendConfig | ScorerConfig,
        *,
        base_urls: Sequence[str] | None = None,
        models_url: str = "/models",
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> Endpoint:
        """The endpoint a backend's config describes (``base_urls`` overrides the config's)."""
        return cls(
            base_urls if base_urls is not None else config.urls,
            config.model,
            api_key_env=config.api_key_env,
            timeout_s=config.timeout_s,
            max_retries=config.max_retries,
            backoff_s=float(config.options.get("backoff_s", 0.5)),
            affinity=bool(config.options.get("affinity", True)),
            models_url=models_url,
            transport=transport,
        )

    def url(self, path: str) -> str:
        """``base_url + path`` of the first replica (for messages naming the server)."""
        return self.base_url + path

    async def post(self, path: str, payload: Mapping[str, Any], *, affinity: str | None = None) -> dict[str, Any]:
        """POST ``payload`` as JSON to one replica (the one of ``affinity`` while it is healthy) and return the
        JSON answer, retrying transient failures; a replica that cannot be reached hands the request to another.
        """
        return await self._with_retries("POST", path, payload, affinity)

    async def get(self, path: str, *, root: bool = False) -> dict[str, Any]:
        """GET ``path`` from a replica; ``root``: ``path`` is on the server root (the base URL without ``/v1``)."""
        return await self._with_retries("GET", path, None, None, root=root)

    async def check_model(self) -> None:
        """Fail with ``ModelNotFoundError`` (listing the served models) unless a replica serves ``model``."""
        await self._with_retries(None, "", None, None)

    async def aclose(self) -> None:
        for task in self._probes:
            task.cancel()
        await asyncio.gather(*self._probes, return_exceptions=True)
        await self._client.aclose()

    async def _check(self, replica: Replica) -> None:
        """Fail with ``ModelNotFoundError`` (listing the served models) if ``replica`` does not serve ``model``;
        asked before its first request (and by every probe that brings it back)."""
        if replica.model_checked or not self.model:
            return
        async with self._check_locks[replica.base_url]:
            if replica.model_checked:
                return
            try:
                served = await self._served(replica)
            except BackendRequestError:
                served = []  # the server has no model list (404): nothing to check against
            if served and self.model not in served:
                raise ModelNotFoundError(
                    f"{replica.base_url} does not serve model {self.model!r}; served: {', '.join(served)}"
                )
            replica.model_checked = True

    async def _with_retries(
        self, method: str | None, path: str, payload: Mapping[str, Any] | None, key: str | None, *, root: bool = False
    ) -> dict[str, Any]:
        """One request (``method`` None: the model check alone) on the replica ``key`` picks."""
        attempt = handovers = 0
        while True:
            self._start_probes()
            replica = self.replicas.pick(key)
            try:
                with self.replicas.serving(replica):
                    await self._check(replica)
                    data = await self._once(replica, method, path, payload, root=root) if method else {}
                self.replicas.succeeded(replica)
                return data
            except _Unreachable as e:
                self.replicas.failed(replica)
                # another replica takes it at once, without spending an attempt (at most once per replica)
                if self.replicas.healthy() and handovers < len(self.replicas) - 1:
                    handovers += 1
                    continue
                error: RetryableBackendError = e
            except RetryableBackendError as e:
                error = e
            if attempt >= self.max_retries:
                if self.max_retries:
                    error.args = (f"{error} (gave up after {attempt + 1} attempts)",)
                raise error
            delay = error.retry_after if isinstance(error, _ServerBusy) else None
            if delay is None:
                delay = self.backoff_s * 2**attempt
            await asyncio.sleep(min(delay, self.max_backoff_s))
            attempt += 1

    def _start_probes(self) -> None:
        """Probe replicas whose time out of service is over, in the background (requests do not wait)."""
        for replica in self.replicas.due():
            replica.model_checked = False  # a restarted server may serve another model: the probe checks
            task = asyncio.get_running_loop().create_task(self._probe(replica))
            self._probes.add(task)
            task.add_done_callback(self._probes.discard)

    async def _probe(self, replica: Replica) -> None:
        try:
            await self._check(replica)
            self.replicas.succeeded(replica)
        except (_Unreachable, BackendTimeoutError):
            self.replicas.failed(replica)
        except BackendError:
            self.replicas.succeeded(replica)  # it answers: the next request to it reports what is wrong
        finally:
            replica.probing = False

    async def _once(
        self, replica: Replica, method: str, path: str, payload: Mapping[str, Any] | None, *, root: bool = False
    ) -> dict[str, Any]:
        base = replica.base_url.removesuffix("/v1") if root else replica.base_url
        url = base + path
        try:
            response = await self._client.request(method, url, json=payload)
        except httpx.TimeoutException:
            raise BackendTimeoutError(
                f"{url} did not answer within {self.timeout_s:g}s (is the server overloaded? raise timeout_s)"
            ) from None
        except httpx.TransportError as e:
            raise _Unreachable(f"cannot reach {url} (is the server running?): {e}") from None
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
            served = await self._served_or_empty(replica)
            listing = f"; served: {', '.join(served)}" if served else ""
            raise ModelNotFoundError(f"{replica.base_url} does not serve model {self.model!r}{listing}")
        if status == 404:
            raise BackendRequestError(f"{url} not found (404): is {replica.base_url} the right base URL? {message}")
        if status in (401, 403):
            raise BackendRequestError(f"{url} refused the request ({status}): check the API key ({message})")
        raise BackendRequestError(f"{url} rejected the request ({status}): {message}")

    async def _served(self, replica: Replica) -> list[str]:
        data = await self._once(replica, "GET", self._models_url, None)
        return [str(m.get("id")) for m in data.get("data", []) if isinstance(m, Mapping)]

    async def _served_or_empty(self, replica: Replica) -> list[str]:
        try:
            return await self._served(replica)
        except BackendError:
            return []


class _Unreachable(BackendUnavailableError):
    """Connection refused, reset or dropped: the replica is taken out of service."""


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
