"""`verifier: preference`: the learned reward model as a reward signal.

It scores (prompt, completion) in batches without gradients, in the trainer process: the
model is loaded once, and copying it to a worker per call would cost more than scoring.
The trainer loads the model before the first step (hybrid_rl/build.py prepare_reward_model):
the folder in reward_model.path, or the default reward model trained (once, then cached) on
rubric-labelled samples of the starting policy.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

from hybrid_rl.reward_model.model import RewardModel
from verifiers import register_verifier


class PreferenceSignal:
    runs_isolated = True  # called in-process on the whole batch (see verifiers.Verifier)

    def __init__(self):
        self.model: Optional[RewardModel] = None
        self.folder: Optional[Path] = None
        self.batch_size = 128

    def load(self, folder: str | Path, batch_size: int = 128) -> None:
        if self.folder != Path(folder) or self.model is None:
            self.model, self.folder = RewardModel.load(folder), Path(folder)
        self.batch_size = batch_size

    def __call__(self, completions: Sequence[str], references, samples=None, **fields) -> list[float]:
        if self.model is None:
            raise RuntimeError("the preference signal has no reward model loaded (set reward_model.path, "
                               "or run through train.py/evaluate.py, which build the default one)")
        if samples is None:
            raise ValueError("the preference signal needs the samples (their prompts) to score completions")
        return self.model.score([s.prompt for s in samples], list(completions), self.batch_size)


PREFERENCE = "preference"
preference = register_verifier(PREFERENCE)(PreferenceSignal())
