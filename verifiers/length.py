"""Length signals: DAPO's overlong shaping (Yu et al. 2025) as a reward a task weighs like
any other:

    task.rewards.overlong: {verifier: overlong, weight: 1.0}
    task.rewards.overlong: {verifier: {_target_: verifiers.length.OverlongPenalty, buffer: 8}}

It reads each completion's token count and sampling limit, which the trainer's and the
evaluations' rollouts attach to the text (hybrid_rl.rollout.Completion).
"""
from __future__ import annotations

import math
from typing import Optional, Sequence


def overlong_penalty(length: int, limit: int, buffer: int) -> float:
    """0 up to limit - buffer tokens, then falling linearly to -1 at the limit, -1 beyond:
    ((limit - buffer) - length) / buffer in the buffer zone."""
    if length <= limit - buffer:
        return 0.0
    if length <= limit:
        return ((limit - buffer) - length) / buffer
    return -1.0


class OverlongPenalty:
    """The soft overlong punishment over the last `buffer` tokens before max_new_tokens
    (None: a fifth of the limit, rounded up, as DAPO's 4,096 of 20,480)."""

    def __init__(self, buffer: Optional[int] = None):
        if buffer is not None and buffer < 1:
            raise ValueError(f"overlong buffer must be at least 1 token, got {buffer}")
        self.buffer = buffer

    def __call__(self, completions: Sequence[str], references, **fields) -> list[float]:
        scores = []
        for text in completions:
            tokens, limit = getattr(text, "tokens", None), getattr(text, "limit", None)
            if tokens is None or limit is None:
                raise TypeError("overlong shaping needs each completion's token count and "
                                "sampling limit, which the rollouts attach; this text has "
                                f"tokens={tokens}, limit={limit}")
            buffer = min(self.buffer or math.ceil(limit / 5), limit)
            scores.append(overlong_penalty(tokens, limit, buffer))
        return scores
