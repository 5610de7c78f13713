"""The generator interface: one async method that writes one step."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from trimroute.types import Generation, StepRequest


@runtime_checkable
class Generator(Protocol):
    """Writes the next step of a solution.

    ``generate_step`` continues ``request.prefill`` (the last, assistant message) byte-exact and stops at
    ``request.stop``; the returned text excludes the stop string. Backends report real token usage and
    map failures onto the ``BackendError`` tree, retrying what is retryable themselves.
    """

    model: str

    async def generate_step(self, request: StepRequest) -> Generation: ...

    async def aclose(self) -> None: ...
