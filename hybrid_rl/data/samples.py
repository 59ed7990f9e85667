"""The unit of task data (`Sample`) and the resumable stream of training prompts."""
from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from typing import Any, Optional


class DataError(ValueError):
    """A dataset problem; the message names the file (or dataset), the row and the field."""


@dataclass
class Sample:
    prompt: str  # text fed to the model (template applied)
    reference: Optional[str]  # gold answer the verifiers compare against
    task: str  # task name; routes the sample to its task's reward weights
    demonstration: Optional[str] = None  # target completion for supervised warm-up
    meta: dict[str, Any] = field(default_factory=dict)


class PromptStream:
    """Endless training prompts: a fresh seeded permutation per epoch; position is resumable."""

    def __init__(self, samples: list[Sample], seed: int, shard: int = 0, num_shards: int = 1):
        self.samples, self.seed = samples, seed
        # Under several processes every rank walks the same order and keeps its own slice of
        # each draw, so a checkpoint's position means the same thing at any process count.
        self.shard, self.num_shards = shard, num_shards
        self.epoch, self.index = 0, 0
        self._order = self._permutation(0)

    def _permutation(self, epoch: int) -> list[int]:
        order = list(range(len(self.samples)))
        random.Random(f"{self.seed}-{epoch}").shuffle(order)
        return order

    def next(self, n: int) -> list[Sample]:
        """This shard's n prompts of a draw of n x num_shards."""
        drawn = self._draw(n * self.num_shards)
        return drawn[self.shard * n : (self.shard + 1) * n]

    def _draw(self, n: int) -> list[Sample]:
        out = []
        while len(out) < n:
            if self.index == len(self._order):
                self.epoch, self.index = self.epoch + 1, 0
                self._order = self._permutation(self.epoch)
            out.append(self.samples[self._order[self.index]])
            self.index += 1
        return out

    def content_hash(self) -> str:
        """SHA-256 over every sample's task, prompt and reference, in order, and the seed: the
        same position means the same prompts only when all of them match."""
        h = hashlib.sha256(f"seed={self.seed}".encode())
        for s in self.samples:
            fields = (s.task, s.prompt, s.reference) if isinstance(s, Sample) else (s,)
            h.update(repr(fields).encode())
        return h.hexdigest()

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "index": self.index, "num_samples": len(self.samples),
                "content_sha256": self.content_hash()}

    def load_state_dict(self, state: dict) -> None:
        if state["num_samples"] != len(self.samples):
            raise DataError(
                f"checkpoint was taken on {state['num_samples']} training samples, "
                f"this run has {len(self.samples)}: the task data changed"
            )
        saved = state.get("content_sha256")  # absent in checkpoints of earlier releases
        if saved is not None and saved != self.content_hash():
            raise DataError(
                "checkpoint was taken on other training data or another task mixture (same "
                f"count, {len(self.samples)} samples, but different prompts, references, tasks "
                "or seed): resuming would not continue the same run. Resume with the data and "
                "seed it was trained on, or start fresh"
            )
        self.epoch, self.index = state["epoch"], state["index"]
        self._order = self._permutation(self.epoch)


def drop_overlong(
    samples: list[Sample], prompt_lengths: list[int], limit: int, on_bad_row: str,
        skipped: list[str]
) -> list[Sample]:
    """Samples whose prompt fits in `limit` tokens. An overlong one raises DataError naming its
    file and row, or is recorded in `skipped` when on_bad_row == "skip"."""
    kept = []
    for sample, n in zip(samples, prompt_lengths):
        if n <= limit:
            kept.append(sample)
            continue
        where = f"{sample.meta.get('source', 'generated data')}, row {sample.meta.get('row', '?')}"
        message = (f"{where}: prompt is {n} tokens, more than "
                   f"the {limit} that fit before the completion")
        if on_bad_row == "error":
            raise DataError(message + " (set task.data.on_bad_row=skip to drop such rows)")
        skipped.append(message)
    return kept
