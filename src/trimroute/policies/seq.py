"""TRIM-Seq (DESIGN.md §5): the policy reads the whole sequence of (score, tokens) pairs.

Its network (``policies.networks.StepSequenceExtractor``) re-encodes the full history from the observation
at every call, which keeps ``decide`` pure.
"""

from __future__ import annotations

from trimroute.policies.agg import LearnedPolicy, load_learned

__all__ = ["load_seq"]


def load_seq(arg: str | None) -> LearnedPolicy:
    """``seq:PATH``: a TRIM-Seq artifact."""
    return load_learned("seq", arg)
