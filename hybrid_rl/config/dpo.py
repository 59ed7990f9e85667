"""dpo.py's own section: which preference loss, its settings, and where the pairs come from."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

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
