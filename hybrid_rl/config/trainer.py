"""`trainer`: GRPO optimisation settings."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, List, Optional

from hybrid_rl.config.checks import choice, positive


@dataclass
class CriticConfig:
    """PPO's value model (`trainer.advantage=gae`, `trainer=ppo`; hybrid_rl/recipes/ppo.py)."""

    # None: a scalar head on a copy of the policy's trunk; else a Hugging Face folder whose
    # trunk gets the head
    model: Optional[str] = None
    # start trunk and head from the task's reward model when it has the policy's architecture
    init_from_reward_model: bool = True
    learning_rate: float = 1e-4  # the critic's own AdamW rate (constant)
    value_clip: Optional[float] = 0.2  # PPO2 value clipping around the old values (None: off)
    warmup_steps: int = 0  # the first steps train only the critic
    gamma: float = 1.0  # GAE discount
    lam: float = 0.95  # GAE lambda
    whiten_advantages: bool = True  # normalise the advantages over the batch's tokens
    minibatches: int = 1  # optimizer steps per epoch (trainer.mu epochs over each rollout)
    target_kl: Optional[float] = None  # stop a rollout's epochs once approx KL passes this

    def problems(self) -> Iterator[str]:
        yield from positive("learning_rate", self.learning_rate)
        yield from positive("value_clip", self.value_clip)
        yield from positive("warmup_steps", self.warmup_steps, allow_zero=True)
        yield from positive("minibatches", self.minibatches)
        yield from positive("target_kl", self.target_kl)
        for name in ("gamma", "lam"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                yield f"{name}: must be in [0, 1], got {getattr(self, name)}"


@dataclass
class TrainerConfig:
    """GRPO optimisation settings (see README 'GRPO knobs')."""

    prompts_per_step: int = 32  # B: prompts sampled per step
    num_generations: int = 8  # G: completions per prompt (group size)
    max_steps: int = 600  # GRPO steps (rollout + update)
    max_time_s: Optional[float] = None  # stop after this many seconds of training, if set
    learning_rate: float = 5e-5  # AdamW peak learning rate
    lr_schedule: str = "constant"  # constant | cosine | linear (decay to 0 at max_steps)
    warmup_steps: int = 0  # linear warm-up of the learning rate, in optimizer steps
    weight_decay: float = 0.0  # AdamW decoupled weight decay
    adam_betas: List[float] = field(default_factory=lambda: [0.9, 0.99])  # AdamW betas
    max_grad_norm: float = 1.0  # gradient clipping (0 = off)
    mu: int = 1  # optimizer passes over each rollout (importance ratio vs the rollout policy)
    micro_batch_size: int = 256  # sequences per forward/backward (gradient accumulation)
    # grpo | rloo | reinforce_pp | reinforce_pp_baseline (hybrid_rl/algo/advantages.py) | gae
    # (PPO with a critic: trainer.critic); reinforce_pp* and gae take beta's KL as a per-token
    # reward instead of a loss term
    advantage: str = "grpo"
    critic: CriticConfig = field(default_factory=CriticConfig)
    advantage_scale: str = "group"  # grpo: group | batch | none (Dr. GRPO)
    std_estimator: str = "sample"  # grpo: sample (unbiased, n-1) | population (n)
    advantage_eps: float = 1e-4  # added to the std before dividing
    epsilon: float = 0.2  # lower clip: ratio >= 1 - epsilon
    epsilon_high: float = 0.2  # upper clip: ratio <= 1 + epsilon_high (DAPO uses 0.28)
    # importance ratio per token (PPO, GRPO) or per sequence, the geometric mean of its
    # tokens' (GSPO: trainer=gspo, which also sets its small clip range)
    importance_level: str = "token"
    beta: float = 0.0  # KL(k3) coefficient; 0 loads no reference model
    loss_type: str = "dapo"  # grpo | bnpo | dapo | dr_grpo (token aggregation)
    mask_truncated_completions: bool = False  # no loss on completions that hit max_new_tokens
    dynamic_sampling: str = "off"  # off | drop (skip all-equal groups) | fill (resample to refill)
    max_fill_rounds: int = 4  # dynamic_sampling=fill: extra rollout rounds per step at most
    max_nonfinite_steps: int = 3  # stop after this many consecutive updates skipped for NaN/inf
    # truncated importance sampling: weigh token losses by min(pi_train/pi_rollout, cap)
    tis_cap: Optional[float] = None

    def optimizer_steps(self) -> int:
        """Policy optimizer steps over the whole run (the learning-rate schedule's length):
        mu passes a step, each of PPO's in critic.minibatches steps."""
        return self.max_steps * self.mu * (self.critic.minibatches if self.advantage == "gae"
                                           else 1)

    def problems(self) -> Iterator[str]:
        from hybrid_rl.algo.advantages import ESTIMATORS
        from hybrid_rl.algo.grpo import (
            ADVANTAGE_SCALES,
            IMPORTANCE_LEVELS,
            LOSS_AGGREGATIONS,
            STD_ESTIMATORS,
        )

        yield from positive("prompts_per_step", self.prompts_per_step)
        if self.num_generations < 2 and self.advantage != "gae":  # PPO's critic needs no group
            yield ("num_generations: group advantages need at least 2 completions per prompt, "
                   f"got {self.num_generations}")
        yield from positive("max_steps", self.max_steps)
        yield from positive("max_time_s", self.max_time_s)
        yield from positive("learning_rate", self.learning_rate)
        yield from choice("lr_schedule", self.lr_schedule, {"constant", "cosine", "linear"})
        yield from positive("warmup_steps", self.warmup_steps, allow_zero=True)
        yield from positive("weight_decay", self.weight_decay, allow_zero=True)
        yield from positive("max_grad_norm", self.max_grad_norm, allow_zero=True)
        yield from positive("mu", self.mu)
        yield from positive("micro_batch_size", self.micro_batch_size)
        yield from choice("advantage", self.advantage, [*ESTIMATORS, "gae"])
        yield from (f"critic.{p}" for p in self.critic.problems())
        yield from choice("importance_level", self.importance_level, IMPORTANCE_LEVELS)
        yield from choice("advantage_scale", self.advantage_scale, ADVANTAGE_SCALES)
        yield from choice("std_estimator", self.std_estimator, STD_ESTIMATORS)
        yield from positive("advantage_eps", self.advantage_eps, allow_zero=True)
        yield from positive("epsilon", self.epsilon, allow_zero=True)
        yield from positive("epsilon_high", self.epsilon_high, allow_zero=True)
        yield from positive("beta", self.beta, allow_zero=True)
        yield from choice("loss_type", self.loss_type, LOSS_AGGREGATIONS)
        yield from choice("dynamic_sampling", self.dynamic_sampling, {"off", "drop", "fill"})
        if self.advantage == "gae" and self.dynamic_sampling != "off":
            yield ("dynamic_sampling: PPO (advantage=gae) learns from groups of equal rewards too "
                   "(its baseline is the critic's value, not the group's): set it to off")
        yield from positive("max_fill_rounds", self.max_fill_rounds, allow_zero=True)
        yield from positive("max_nonfinite_steps", self.max_nonfinite_steps, allow_zero=True)
        yield from positive("tis_cap", self.tis_cap)
        if len(self.adam_betas) != 2 or not all(0.0 <= b < 1.0 for b in self.adam_betas):
            yield f"adam_betas: must be two numbers in [0, 1), got {list(self.adam_betas)}"
