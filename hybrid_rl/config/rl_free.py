"""The sections of the RL-free recipes: dpo.py (which preference loss, its settings, where the
pairs come from) and rejection_sampling.py (what a round keeps and how it fine-tunes)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, Optional

from hybrid_rl.config.checks import choice, positive
from hybrid_rl.config.reward import PreferenceDataConfig

LOSSES = ("dpo", "ipo", "simpo", "orpo")
PAIR_SOURCES = ("on_policy", "offline")


@dataclass
class DPOConfig:
    """Offline preference optimisation of the policy (hybrid_rl/algo/preference.py)."""

    # dpo (sigmoid; label_smoothing > 0 is cDPO) | ipo | simpo | orpo (the last two are
    # reference-free: no reference model is loaded)
    loss: str = "dpo"
    beta: float = 0.1  # strength of the implicit KL to the reference (simpo: reward scale)
    label_smoothing: float = 0.0  # dpo: assumed share of flipped labels, in [0, 0.5)
    simpo_gamma: float = 0.5  # simpo: target reward margin
    orpo_lambda: float = 0.1  # orpo: weight of the odds-ratio term next to the chosen NLL
    # on_policy: online DPO, fresh pairs every step: trainer.num_generations completions of
    # trainer.prompts_per_step prompts from the current policy, the best and the worst of each
    # prompt by the task's composed reward (verifiers, reward model, weights and gates; prompts
    # whose samples tie are skipped). offline: pairs from dpo.data (a file, or rubric-labelled
    # samples of the starting policy), trainer.prompts_per_step pairs a step.
    pairs: str = "on_policy"
    data: PreferenceDataConfig = field(default_factory=PreferenceDataConfig)  # pairs=offline
    eval_fraction: float = 0.1  # offline: share of pairs held out to measure implicit accuracy

    def problems(self) -> Iterator[str]:
        yield from choice("loss", self.loss, LOSSES)
        yield from choice("pairs", self.pairs, PAIR_SOURCES)
        yield from positive("beta", self.beta)
        yield from positive("simpo_gamma", self.simpo_gamma, allow_zero=True)
        yield from positive("orpo_lambda", self.orpo_lambda, allow_zero=True)
        if not 0.0 <= self.label_smoothing < 0.5:
            yield f"label_smoothing: must be in [0, 0.5), got {self.label_smoothing}"
        if not 0.0 < self.eval_fraction < 1.0:
            yield f"eval_fraction: must be in (0, 1), got {self.eval_fraction}"
        yield from (f"data.{p}" for p in self.data.problems())


@dataclass
class RejectionSamplingConfig:
    """rejection_sampling.py: rounds of best-of-N then fine-tuning on the kept answers. A round
    samples trainer.num_generations completions of trainer.prompts_per_step prompts."""

    rounds: int = 30  # the recipe runs train.py's loop with trainer.max_steps = rounds
    eval_every_rounds: int = 5  # held-out evaluation (eval.every_steps is set to it)
    keep_top: int = 1  # distinct completions kept per prompt, best reward first
    # also drop completions whose composed reward is below this (None: no floor). Beside it, a
    # completion must pass its task's gates and, where the accuracy signal counts in the reward
    # (weight > 0), that signal too
    min_reward: Optional[float] = None
    epochs: int = 2  # SFT passes over a round's kept completions
    batch_size: int = 16  # kept completions per SFT optimizer step

    def problems(self) -> Iterator[str]:
        for f in ("rounds", "keep_top", "epochs", "batch_size"):
            yield from positive(f, getattr(self, f))
        yield from positive("eval_every_rounds", self.eval_every_rounds, allow_zero=True)
