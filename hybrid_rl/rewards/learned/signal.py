"""`verifier: preference`: the learned reward model (or ensemble) as a reward signal.

It scores (prompt, completion) in batches without gradients, in the trainer process: the
model is loaded once, and copying it to a worker per call would cost more than scoring.
The recipe constructs it with the reward model's folder (reward_model.path, or the cached
default one that hybrid_rl/recipes/reward_model.py trains before the first step); the model
is read on the first call, so the folder may be filled after the verifier pool has forked.

With an ensemble (reward_model.ensemble_size > 1; hybrid_rl/rewards/learned/ensemble.py) the
score is the members' mean minus `uncertainty_penalty` times their standard deviation (the
signal's own setting, so each task chooses), and the standard deviation of every scored
completion is reported beside the scores as the series `<signal>/disagreement`.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional, Sequence

from hybrid_rl.rewards.learned.ensemble import (
    RewardEnsemble,
    is_ensemble,
    load_reward_model,
    penalised,
)
from hybrid_rl.rewards.learned.model import META_FILE

PREFERENCE = "preference"
DISAGREEMENT = "disagreement"


class PreferenceSignal:
    runs_isolated = True  # called in-process on the whole batch (see verifiers.Verifier)

    def __init__(self, reward_model_path: Optional[str] = None, score_batch_size: int = 128,
                 uncertainty_penalty: float = 0.0):
        self.folder = None if reward_model_path is None else Path(reward_model_path)
        self.batch_size = score_batch_size
        self.uncertainty_penalty = uncertainty_penalty
        self.model = None
        self._spread: list[float] = []  # the last call's per-completion disagreement
        # the per-completion series each call reports beside its scores (RewardScorer)
        self.diagnostics: tuple[str, ...] = self._series()

    def use(self, folder: str | Path) -> None:
        """Score with the reward model in `folder` from the next call on."""
        if self.folder != Path(folder):
            self.folder, self.model = Path(folder), None
            self.diagnostics = self._series()

    def _series(self) -> tuple[str, ...]:
        return (DISAGREEMENT,) if self.folder is not None and is_ensemble(self.folder) else ()

    def take_diagnostics(self) -> dict[str, list[float]]:
        """The last call's series, one value per completion it scored."""
        spread, self._spread = self._spread, []
        return {DISAGREEMENT: spread} if self.diagnostics else {}

    def validation_disagreement(self) -> Optional[float]:
        """An ensemble's mean disagreement on its validation responses (None: one model)."""
        if not self.diagnostics:
            return None
        return json.loads((self.folder / META_FILE).read_text())["validation_disagreement"]

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
            self.model = load_reward_model(self.folder)
        prompts = [s.prompt for s in samples]
        if not isinstance(self.model, RewardEnsemble):
            if self.uncertainty_penalty:
                raise ValueError(f"uncertainty_penalty={self.uncertainty_penalty} needs a "
                                 f"reward-model ensemble; {self.folder} holds one model "
                                 "(train one with reward_model.ensemble_size=K)")
            return self.model.score(prompts, list(completions), self.batch_size)
        members = self.model.member_scores(prompts, list(completions), self.batch_size)
        scores, self._spread = penalised(members, self.uncertainty_penalty)
        return scores
