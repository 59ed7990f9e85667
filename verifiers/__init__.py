"""Reward checkers, found by name.

A verifier scores a batch of completions against their samples' references:

    def my_verifier(completions: list[str], references: list[str | None], **fields) -> list[float | None]

`None` means "not applicable to this sample" (a mixed-task batch needs no special case).
Register one with the decorator, or, from an installed package, through the Python
entry-point group `hybrid_rl.verifiers` (name = "package.module:function").
"""
from verifiers.registry import Verifier, available_verifiers, get_verifier, register_verifier

__all__ = ["Verifier", "available_verifiers", "get_verifier", "register_verifier"]
