"""Reward checkers, found by name.

A verifier scores a batch of completions against their samples' references:

    def my_verifier(completions: list[str], references: list[str | None], **fields)
        -> list[float | None]

`None` means "not applicable to this sample" (a mixed-task batch needs no special case).
A score may be a `Flagged(value, reason)`: it counts as `value`, and the reason (a timeout, a
crashed check) is counted and recorded by the trainer.
Register one with the decorator, or, from an installed package, through the Python
entry-point group `hybrid_rl.verifiers` (name = "package.module:function").
"""

from verifiers.registry import (
    Flagged,
    Verifier,
    available_verifiers,
    get_verifier,
    register_verifier,
)

__all__ = ["Flagged", "Verifier", "available_verifiers", "get_verifier", "register_verifier"]
