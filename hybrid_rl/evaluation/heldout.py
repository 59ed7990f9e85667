"""Held-out evaluation: greedy completions scored by the task's accuracy signal, and the
unbiased pass@k from several sampled completions per problem."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

from hybrid_rl.data.samples import Sample
from hybrid_rl.rewards.scorer import RewardScorer
from hybrid_rl.rollout import RolloutBackend, generate_measured


@dataclass
class EvalResult:
    accuracy: float  # mean of the accuracy signal over samples it applies to
    num_scored: int  # samples the signal had an opinion on
    mean_length: float  # completion tokens, on average
    examples: list[dict]  # a few (prompt, completion, reference, score) rows
    signal_means: dict[str, float]  # every signal's mean over the samples it applies to
    # every signal's score of each problem, in order (None: not applicable)
    per_problem: dict[str, list] = field(default_factory=dict)


def greedy_scores(
    rollout: RolloutBackend, samples: Sequence[Sample], scorer: RewardScorer, batch_size: int = 256,
) -> tuple[list[str], dict[str, list], list[int]]:
    """(completions, signal -> scores, completion lengths) of one greedy completion per problem."""
    texts, lengths = [], []
    for i in range(0, len(samples), batch_size):
        batch = generate_measured(rollout, [s.prompt for s in samples[i : i + batch_size]], 1,
                                  greedy=True)
        texts += batch.texts
        lengths += [int(n) for n in batch.completion_mask.sum(1).tolist()]
    return texts, scorer.score(samples, texts).values, lengths


def heldout_accuracy(
    rollout: RolloutBackend, samples: Sequence[Sample], scorer: RewardScorer, signal: str,
    batch_size: int = 256, num_examples: int = 3,
) -> EvalResult:
    texts, by_signal, lengths = greedy_scores(rollout, samples, scorer, batch_size)
    values = by_signal[signal]
    scored = [v for v in values if v is not None]
    examples = [
        {"prompt": s.prompt, "completion": t, "reference": s.reference, "score": v}
        for s, t, v in list(zip(samples, texts, values))[:num_examples]
    ]
    return EvalResult(
        accuracy=sum(scored) / len(scored) if scored else float("nan"), num_scored=len(scored),
        mean_length=sum(lengths) / max(len(lengths), 1), examples=examples,
        signal_means={name: mean_applicable(v) for name, v in by_signal.items()},
        per_problem=by_signal,
    )


def wilson_interval(accuracy: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% confidence interval of an accuracy measured on n problems (Wilson score interval:
    unlike p +/- 1.96 sqrt(p(1-p)/n) it stays inside [0, 1] and is not empty at 0% or 100%).
    500 problems at 50% give about +/- 4.4 points."""
    if n <= 0 or math.isnan(accuracy):
        return float("nan"), float("nan")
    centre = (accuracy + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(accuracy * (1 - accuracy) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def mean_applicable(values: Sequence) -> float:
    """Mean over the values that are not None; NaN when there are none."""
    scored = [float(v) for v in values if v is not None]
    return sum(scored) / len(scored) if scored else float("nan")


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples of which c passed: 1 - C(n-c, k) / C(n, k) (Chen et al.,
    2021), as a product so large n does not overflow."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def sampled_pass_at_k(
    rollout: RolloutBackend, samples: Sequence[Sample], scorer: RewardScorer, signal: str,
    n: int, ks: Sequence[int], batch_size: int = 256,
) -> dict[int, float]:
    """{k: mean unbiased pass@k} over problems the signal applies to; a completion passes when
    the signal scores it 1 (all tests held, answer correct)."""
    per_call = max(1, batch_size // n)
    texts = []
    for i in range(0, len(samples), per_call):
        # n per prompt, in order
        texts += generate_measured(rollout, [s.prompt for s in samples[i : i + per_call]], n).texts
    expanded = [s for s in samples for _ in range(n)]
    values = scorer.score(expanded, texts).values[signal]
    passed = []
    for j in range(len(samples)):
        group = values[j * n : (j + 1) * n]
        if all(v is not None for v in group):
            passed.append(sum(v >= 1.0 for v in group))
    return {
        k: sum(pass_at_k(n, c, k) for c in passed) / len(passed) if passed else float("nan")
        for k in ks
    }
