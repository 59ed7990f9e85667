"""The training prompts of a task mixture: each task's own PromptStream, drawn from by share.

Every draw hands each task its share of the prompts drawn so far, to within one prompt: after
D prompts in all, task i has had floor(share_i x D) or one more. The prompts a draw leaves over
after the floors go to the tasks furthest behind their share (ties broken by a generator seeded
with the run's seed and the draw's number), and the draw's order is shuffled the same way. So
the stream is a function of the seed and the draw count alone, which is all a checkpoint needs
to restore it.
"""
from __future__ import annotations

import hashlib
import math
import random
from typing import Sequence

from hybrid_rl.data.samples import DataError, PromptStream, Sample


def quotas(shares: Sequence[float], drawn: Sequence[int], n: int, rng: random.Random) -> list[int]:
    """How many of the next n prompts each task gets, given how many it has had so far:
    everyone up to floor(share x total), then the largest shortfalls get one more each."""
    total = sum(drawn) + n
    weight = sum(shares)
    targets = [s / weight * total for s in shares]
    out = [max(0, min(n, math.floor(t) - d)) for t, d in zip(targets, drawn)]
    while sum(out) > n:  # only when a task was already over its floor: trim the most ahead
        i = max((k for k in range(len(out)) if out[k] > 0),
                key=lambda k: drawn[k] + out[k] - targets[k])
        out[i] -= 1
    left = n - sum(out)
    order = sorted(range(len(shares)), key=lambda k: (drawn[k] + out[k] - targets[k],
                                                      rng.random()))
    for i in [k for k in order if shares[k] > 0][:left]:
        out[i] += 1
    return out


class MixedPromptStream:
    """Endless prompts from several tasks in their shares; same interface as PromptStream."""

    def __init__(self, samples_by_task: dict[str, list[Sample]], shares: dict[str, float],
                 seed: int, shard: int = 0, num_shards: int = 1):
        self.names = list(samples_by_task)
        self.shares = [float(shares[name]) for name in self.names]
        self.streams = {name: PromptStream(samples, f"{seed}-{name}")
                        for name, samples in samples_by_task.items()}
        self.seed, self.shard, self.num_shards = seed, shard, num_shards
        self.drawn = [0] * len(self.names)  # prompts each task has given so far
        self.draws = 0

    @property
    def samples(self) -> list[Sample]:
        return [s for name in self.names for s in self.streams[name].samples]

    def next(self, n: int) -> list[Sample]:
        """This shard's n prompts of a draw of n x num_shards."""
        drawn = self._draw(n * self.num_shards)
        return drawn[self.shard * n : (self.shard + 1) * n]

    def _draw(self, n: int) -> list[Sample]:
        rng = random.Random(f"{self.seed}-mix-{self.draws}")
        counts = quotas(self.shares, self.drawn, n, rng)
        out = []
        for i, (name, k) in enumerate(zip(self.names, counts)):
            out += self.streams[name]._draw(k)
            self.drawn[i] += k
        rng.shuffle(out)
        self.draws += 1
        return out

    def content_hash(self) -> str:
        h = hashlib.sha256(repr((self.seed, self.names, self.shares)).encode())
        for name in self.names:
            h.update(self.streams[name].content_hash().encode())
        return h.hexdigest()

    def state_dict(self) -> dict:
        return {"mixture": {name: self.streams[name].state_dict() for name in self.names},
                "drawn": list(self.drawn), "draws": self.draws,
                "num_samples": len(self.samples), "content_sha256": self.content_hash()}

    def load_state_dict(self, state: dict) -> None:
        saved = state.get("mixture")
        if saved is None or list(saved) != self.names:
            raise DataError(
                f"checkpoint was taken on the task(s) {list(saved) if saved else 'of one task'}, "
                f"this run mixes {self.names}: resume with the mixture it was trained on, or "
                "start fresh"
            )
        if state["content_sha256"] != self.content_hash():
            raise DataError(
                "checkpoint was taken on other task data, other shares or another seed: "
                "resuming would not continue the same run. Resume with the mixture, shares and "
                "seed it was trained on, or start fresh"
            )
        for name in self.names:
            self.streams[name].load_state_dict(saved[name])
        self.drawn, self.draws = list(state["drawn"]), state["draws"]
