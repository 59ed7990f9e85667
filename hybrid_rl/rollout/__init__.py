"""Rollout backends: sample n completions per prompt with their token log-probs.

A backend generates and never scores. A backend that samples from the policy's own module (hf)
says `copies_weights = False` and has nothing to copy; one that runs its own engine (vLLM) says
True, and the trainer calls `sync_weights(policy)` after every optimizer step, with the full
weights gathered under ZeRO-3; it must push them or fail loudly.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Optional, Protocol, Sequence

import torch


class Completion(str):
    """A completion's text that also says how many tokens it took (EOS included) and the
    limit it was sampled under (max_new_tokens), for signals that judge length (overlong
    shaping, verifiers/length.py). Every other verifier sees a plain str."""

    def __new__(cls, text: str, tokens: int, limit: Optional[int]):
        obj = super().__new__(cls, text)
        obj.tokens, obj.limit = tokens, limit
        return obj

    def __reduce__(self):  # keep the counts when the text crosses a process boundary
        return (Completion, (str(self), self.tokens, self.limit))


def generate_measured(rollout, prompts: Sequence[str], n: int, **kwargs) -> "RolloutBatch":
    """rollout.generate, its texts as Completions under the backend's current limit."""
    batch = rollout.generate(prompts, n, **kwargs)
    lengths = batch.completion_mask.sum(1).tolist()
    limit = getattr(rollout, "max_new_tokens", None)  # None: a backend without a limit
    batch.texts = [Completion(t, int(k), limit)
                   for t, k in zip(batch.texts, lengths)]
    return batch


@dataclass
class RolloutBatch:
    """N = len(prompts) * n completions, each prompt's n samples contiguous (a group)."""

    prompt_ids: torch.Tensor  # [N, P] left-padded
    prompt_mask: torch.Tensor  # [N, P] 1 for real prompt tokens
    completion_ids: torch.Tensor  # [N, T] right-padded
    completion_mask: torch.Tensor  # [N, T] 1 up to and including the first EOS
    rollout_logprobs: torch.Tensor  # [N, T] log-probs of the sampled tokens under the sampler
    truncated: torch.Tensor  # [N] bool: hit max_new_tokens without EOS
    texts: list[str]  # decoded completions (special tokens removed)
    # [N, T] the reference model's log-probs of the sampled tokens, when the trainer computed
    # them while the verifiers were scoring (None: the update computes them)
    reference_logprobs: Optional[torch.Tensor] = None

    def __len__(self) -> int:
        return len(self.texts)

    def select(self, rows: torch.Tensor) -> "RolloutBatch":
        """The completions at `rows` (a 1-D index tensor), in that order."""
        idx = rows.tolist()
        return RolloutBatch(
            self.prompt_ids[rows], self.prompt_mask[rows], self.completion_ids[rows],
            self.completion_mask[rows], self.rollout_logprobs[rows], self.truncated[rows],
            [self.texts[i] for i in idx],
            None if self.reference_logprobs is None else self.reference_logprobs[rows],
        )


def concat_batches(batches: Sequence[RolloutBatch], pad_token_id: int) -> RolloutBatch:
    """Join rollouts whose prompt or completion widths differ (dynamic-sampling refills)."""
    if len(batches) == 1:
        return batches[0]
    P = max(b.prompt_ids.shape[1] for b in batches)
    T = max(b.completion_ids.shape[1] for b in batches)

    def pad(t, width, value, left):
        extra = width - t.shape[1]
        if extra == 0:
            return t
        filler = torch.full((t.shape[0], extra), value, dtype=t.dtype, device=t.device)
        return torch.cat([filler, t] if left else [t, filler], dim=1)

    return RolloutBatch(
        torch.cat([pad(b.prompt_ids, P, pad_token_id, True) for b in batches]),
        torch.cat([pad(b.prompt_mask, P, 0, True) for b in batches]),
        torch.cat([pad(b.completion_ids, T, pad_token_id, False) for b in batches]),
        torch.cat([pad(b.completion_mask, T, 0, False) for b in batches]),
        torch.cat([pad(b.rollout_logprobs, T, 0.0, False) for b in batches]),
        torch.cat([b.truncated for b in batches]), [t for b in batches for t in b.texts],
        None if any(b.reference_logprobs is None for b in batches)
        else torch.cat([pad(b.reference_logprobs, T, 0.0, False) for b in batches]),
    )


@contextlib.contextmanager
def completion_limit(rollout, max_new_tokens: Optional[int]):
    """Within the block the backend samples at most `max_new_tokens` (None: its own limit).
    Both backends read their limit at each call, so a mixture's tasks can differ in it."""
    if max_new_tokens is None:
        yield rollout
        return
    saved, rollout.max_new_tokens = rollout.max_new_tokens, max_new_tokens
    try:
        yield rollout
    finally:
        rollout.max_new_tokens = saved


def generate_by_limit(rollout, prompts: Sequence, n: int, limits: dict, pad_token_id: int,
                      **kwargs) -> tuple[list, "RolloutBatch"]:
    """(prompts in the order sampled, their completions): `prompts` are samples with a
    `.task`; each task's `limits[task]` (None: the backend's own) gets a generate call of its
    own, so a short task is not padded to a long one's limit. Groups stay contiguous; one
    limit keeps the order as given."""
    order = sorted(range(len(prompts)), key=lambda i: limits.get(prompts[i].task) or 0)
    ordered = [prompts[i] for i in order]
    batches, start = [], 0
    while start < len(ordered):
        limit = limits.get(ordered[start].task)
        end = start
        while end < len(ordered) and limits.get(ordered[end].task) == limit:
            end += 1
        with completion_limit(rollout, limit):
            batches.append(generate_measured(rollout, [s.prompt for s in ordered[start:end]],
                                             n, **kwargs))
        start = end
    return ordered, concat_batches(batches, pad_token_id)


class RolloutBackend(Protocol):
    copies_weights: bool  # keeps its own copy of the weights: sync_weights after every step

    def generate(self, prompts: Sequence[str], n: int, *, greedy: bool = False) -> RolloutBatch: ...

    def sync_weights(self, policy: torch.nn.Module) -> None: ...


def build_backend(name: str, policy, tokenizer, **settings) -> RolloutBackend:
    """The rollout backend registered as `name` (hybrid_rl/plugins.py), on `policy`."""
    from hybrid_rl.plugins import ROLLOUT_BACKENDS

    return ROLLOUT_BACKENDS.get(name)(policy, tokenizer, **settings)
