"""The policy interface: a pure function from an observation to an action."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from trimroute.types import Action, Observation

KEEP_FINAL = "keep-final"  # the spec modifier of policies that never rewrite the step ending the solution


def final_modifier(keep_final: bool) -> str:
    """The spec suffix of a policy (or method) that never rewrites the step ending the solution."""
    return f":{KEEP_FINAL}" if keep_final else ""


@runtime_checkable
class Policy(Protocol):
    """Decides whether to keep the weak proposal or have the strong model rewrite that step.

    ``decide`` must be pure (no I/O, no hidden state): the same observation gives the same action.
    ``fixed_action`` lets the engine skip work a policy will never use: ``CONTINUE`` (weak-only: no
    scorer calls) or ``REGENERATE`` (strong-only: no weak proposals, no scorer calls). ``needs_scores``
    is False for policies that ignore scores (random), so the engine does not call the scorer.
    ``name`` is the spec string that recreates the policy (e.g. ``thr:0.7``).
    """

    @property
    def name(self) -> str: ...

    @property
    def fixed_action(self) -> Action | None: ...

    @property
    def needs_scores(self) -> bool: ...

    def decide(self, obs: Observation) -> Action: ...
