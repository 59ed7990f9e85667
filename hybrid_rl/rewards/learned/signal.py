"""`verifier: preference`: the learned reward model as a reward signal.

It scores (prompt, completion) in batches without gradients, in the trainer process: the
model is loaded once, and copying it to a worker per call would cost more than scoring.
The recipe constructs it with the reward model's folder (reward_model.path, or the cached
default one that hybrid_rl/recipes/reward_model.py trains before the first step); the model
is read on the first call, so the folder may be filled after the verifier pool has forked.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

from hybrid_rl.rewards.learned.model import RewardModel

PREFERENCE = "preference"


class PreferenceSignal:
    runs_isolated = True  # called in-process on the whole batch (see verifiers.Verifier)

    def __init__(self, reward_model_path: Optional[str] = None, score_batch_size: int = 128):
        self.folder = None if reward_model_path is None else Path(reward_model_path)
        self.batch_size = score_batch_size
        self.model: Optional[RewardModel] = None

    def use(self, folder: str | Path) -> None:
        """Score with the reward model in `folder` from the next call on."""
        if self.folder != Path(folder):
            self.folder, self.model = Path(folder), None

    def __call__(self, completions: Sequence[str], references, samples=None,
                 **fields) -> list[float]:
        if self.folder is None:
            raise RuntimeError("the preference signal has no reward "
                               "model (set reward_model.path, or run "
                               "through train.py/evaluate.py, which build the default one)")
        if samples is None:
            raise ValueError("the preference signal needs the samples "
                             "(their prompts) to score completions")
        if self.model is None:
            self.model = RewardModel.load(self.folder)
        return self.model.score([s.prompt for s in samples], list(completions), self.batch_size)
