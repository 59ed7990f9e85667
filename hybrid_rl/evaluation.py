"""Held-out evaluation: greedy completions scored by the task's accuracy signal."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from hybrid_rl.data import Sample
from hybrid_rl.rewards import RewardScorer
from hybrid_rl.rollout import RolloutBackend


@dataclass
class EvalResult:
    accuracy: float  # mean of the accuracy signal over samples it applies to
    num_scored: int  # samples the signal had an opinion on
    mean_length: float  # completion tokens, on average
    examples: list[dict]  # a few (prompt, completion, reference, score) rows


def heldout_accuracy(
    rollout: RolloutBackend, samples: Sequence[Sample], scorer: RewardScorer, signal: str,
    batch_size: int = 256, num_examples: int = 3,
) -> EvalResult:
    texts, lengths = [], []
    for i in range(0, len(samples), batch_size):
        chunk = samples[i : i + batch_size]
        batch = rollout.generate([s.prompt for s in chunk], 1, greedy=True)
        texts += batch.texts
        lengths += batch.completion_mask.sum(1).tolist()
    values = scorer.score(samples, texts).values[signal]
    scored = [v for v in values if v is not None]
    examples = [
        {"prompt": s.prompt, "completion": t, "reference": s.reference, "score": v}
        for s, t, v in list(zip(samples, texts, values))[:num_examples]
    ]
    return EvalResult(
        accuracy=sum(scored) / len(scored) if scored else float("nan"),
        num_scored=len(scored),
        mean_length=sum(lengths) / max(len(lengths), 1),
        examples=examples,
    )
