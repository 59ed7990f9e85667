"""The trainer's side of the advantage estimators (hybrid_rl/algo/advantages.py): the update's
settings and one step's advantages, from the config."""
from __future__ import annotations

import torch

from hybrid_rl.algo.advantages import (
    ESTIMATORS,
    KL_IN_REWARD,
    AdvantageInputs,
    AdvantageSettings,
)
from hybrid_rl.algo.update import UpdateSettings, reference_logprobs
from hybrid_rl.runtime import distributed


def update_settings(cfg) -> UpdateSettings:
    """The policy update's settings. An estimator that takes the KL as a per-token reward
    (REINFORCE++) leaves the loss without a KL term: beta is used in one place, not two."""
    t, r = cfg.trainer, cfg.rollout
    loss_beta = 0.0 if t.advantage in KL_IN_REWARD else t.beta
    return UpdateSettings(t.loss_type, t.epsilon, t.epsilon_high, loss_beta, t.mu,
                          t.micro_batch_size, r.max_new_tokens, r.temperature,
                          t.mask_truncated_completions, t.tis_cap, r.top_k, r.top_p,
                          importance_level=t.importance_level)


def batch_advantages(run, batch, reward: torch.Tensor) -> torch.Tensor:
    """[N] or [N, T] advantages of one scored rollout by trainer.advantage. A KL-in-reward
    estimator reads the reference's log-probs (taken while the verifiers scored) and the
    sampling policy's, over its whole distribution, taken now (before any update)."""
    t = run.cfg.trainer
    kl_coef = t.beta if t.advantage in KL_IN_REWARD else 0.0
    settings = AdvantageSettings(t.advantage_scale, t.std_estimator, t.advantage_eps, kl_coef)
    old = ref = None
    if kl_coef:
        old = reference_logprobs(run.engine.model, batch, run.settings)
        ref = batch.reference_logprobs
    inputs = AdvantageInputs(reward, t.num_generations, batch.completion_mask, old, ref,
                             distributed.sum_over_ranks)
    return ESTIMATORS[t.advantage](inputs, settings)
