"""Three verifiers, one per way of plugging one in.

A verifier takes the batch's completions and references (plus the samples as `samples=`) and
returns one score per completion, or None where it has no opinion.
"""
from __future__ import annotations

from typing import Optional, Sequence


def concise(completions: Sequence[str], references: Sequence[Optional[str]],
            **fields) -> list[float]:
    """1.0 for a completion no longer than its reference, falling linearly to 0 at three times
    as long; no opinion (None) when the sample has no reference. Found by the entry point."""
    scores = []
    for completion, reference in zip(completions, references):
        if reference is None:
            scores.append(None)
            continue
        budget = max(len(reference), 1)
        excess = max(len(completion.strip()) - budget, 0)
        scores.append(max(0.0, 1.0 - excess / (2 * budget)))
    return scores


def digits_only(completions: Sequence[str], references: Sequence[Optional[str]],
                **fields) -> list[float]:
    """1.0 when the completion is an integer and nothing else (a format check)."""
    return [float(c.strip().lstrip("-").isdigit()) for c in completions]


def make_keyword_verifier(keyword: str, score: float = 1.0):
    """A factory for `_target_` configs, which may pass arguments:
    task.rewards.polite={verifier: {keyword: please,
        _target_: hybrid_rl_plugin_example.verifiers.make_keyword_verifier}, weight: 0.1}"""

    def keyword_verifier(completions, references, **fields):
        return [score if keyword in c else 0.0 for c in completions]

    return keyword_verifier
