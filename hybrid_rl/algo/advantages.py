"""Advantage estimators as a registry of pure tensor functions (ALGORITHMS.md in the design
notes): one name per estimator, selected by `trainer.advantage`.

- grpo: group-relative, (R - group mean) / (group std + eps) or its variants (GRPO.md);
- rloo: leave-one-out baseline (Ahmadian et al. 2024);
- reinforce_pp, reinforce_pp_baseline: REINFORCE++ (Hu 2025), the KL to the reference folded
  into a per-token reward and the returns whitened over the whole batch of tokens;
- gae (Schulman et al. 2016) is here as `gae`, for a critic's values (PPO).

An estimator returns [N] (one advantage per completion) or [N, T] (one per token); the policy
loss takes either. Shapes: N completions in groups of G consecutive ones, T completion tokens.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch

from hybrid_rl.algo.grpo import group_advantages


def _no_other_process(value: float) -> float:
    return value


@dataclass(frozen=True)
class AdvantageInputs:
    rewards: torch.Tensor  # [N] the composed reward of each completion
    group_size: int  # G
    mask: torch.Tensor  # [N, T] 1 for the completion's tokens
    old_logp: Optional[torch.Tensor] = None  # [N, T] the sampling policy (KL-in-reward only)
    ref_logp: Optional[torch.Tensor] = None  # [N, T] the frozen reference (KL-in-reward only)
    # a float summed over every training process (whole-batch statistics under DeepSpeed)
    total: Callable[[float], float] = _no_other_process


@dataclass(frozen=True)
class AdvantageSettings:
    scale: str = "group"  # grpo: group | batch | none
    std_estimator: str = "sample"  # grpo: sample | population
    eps: float = 1e-4  # added to a std before dividing
    kl_coef: float = 0.0  # reinforce_pp: beta of the per-token KL reward


def rloo(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """[N] RLOO: R_i minus the mean of the other G-1 rewards of its group."""
    grouped = rewards.view(-1, group_size)
    others = (grouped.sum(1, keepdim=True) - grouped) / (group_size - 1)
    return (grouped - others).reshape(-1)


def token_rewards(rewards: torch.Tensor, mask: torch.Tensor, old_logp=None, ref_logp=None,
                  kl_coef: float = 0.0) -> torch.Tensor:
    """[N, T] the classic RLHF reward (InstructGPT): -kl_coef * (old_t - ref_t) at every token,
    plus the completion's reward at its last token."""
    mask = mask.to(rewards.dtype)
    out = torch.zeros_like(mask)
    if kl_coef:
        if old_logp is None or ref_logp is None:
            raise ValueError("a KL reward needs the sampling and reference log-probs")
        out = -kl_coef * (old_logp - ref_logp).to(mask.device, mask.dtype) * mask  # models' device
    last = (mask.sum(1).long() - 1).clamp(min=0)
    rows = torch.arange(len(rewards))
    out[rows, last] += rewards * (mask.sum(1) > 0)
    return out


def returns_to_go(rewards: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """[N, T] G_t = sum_{k >= t} r_k over the completion's tokens (undiscounted)."""
    r = rewards * mask
    return (r.flip(1).cumsum(1).flip(1)) * mask


def whiten(x: torch.Tensor, mask: torch.Tensor, eps: float = 1e-4,
           total: Callable[[float], float] = _no_other_process) -> torch.Tensor:
    """(x - mean) / (std + eps) over the active tokens of the whole batch (every process's,
    through `total`); the population std. Inactive tokens get 0."""
    mask = mask.to(x.dtype)
    count = total(float(mask.sum()))
    mean = total(float((x * mask).sum())) / max(count, 1.0)
    var = total(float((((x - mean) * mask) ** 2).sum())) / max(count, 1.0)
    return (x - mean) / (var ** 0.5 + eps) * mask


def reinforce_pp(inputs: AdvantageInputs, s: AdvantageSettings,
                 baseline: bool = False) -> torch.Tensor:
    """[N, T] REINFORCE++: whitened returns of the per-token KL reward plus the outcome; the
    baseline variant first subtracts each group's mean reward from R."""
    rewards = inputs.rewards
    if baseline:
        grouped = rewards.view(-1, inputs.group_size)
        rewards = (grouped - grouped.mean(1, keepdim=True)).reshape(-1)
    r = token_rewards(rewards, inputs.mask, inputs.old_logp, inputs.ref_logp, s.kl_coef)
    return whiten(returns_to_go(r, inputs.mask.to(r.dtype)), inputs.mask, s.eps, inputs.total)


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0,
        lam: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """([N, T] advantages, [N, T] returns) by generalised advantage estimation from per-token
    rewards and the critic's values; the value after a completion's last token is 0.
    delta_t = r_t + gamma V_{t+1} - V_t, A_t = sum_l (gamma lam)^l delta_{t+l}, ret = A + V."""
    mask = mask.to(values.dtype)
    values = values * mask
    zero = torch.zeros_like(values[:, :1])
    next_values = torch.cat([values[:, 1:], zero], 1)  # 0 past the last token (masked)
    continues = torch.cat([mask[:, 1:], zero], 1)  # 1 where token t+1 is the completion's
    advantages = torch.zeros_like(values)
    running = zero[:, 0]
    for t in reversed(range(values.shape[1])):
        delta = rewards[:, t] + gamma * next_values[:, t] - values[:, t]
        running = (delta + gamma * lam * running * continues[:, t]) * mask[:, t]
        advantages[:, t] = running
    return advantages, (advantages + values) * mask


def _grpo(inputs: AdvantageInputs, s: AdvantageSettings) -> torch.Tensor:
    return group_advantages(inputs.rewards, inputs.group_size, s.scale, s.std_estimator, s.eps)


# Registered by name: a new estimator is one function and one entry here. Those in
# KL_IN_REWARD take the reference's KL as a per-token reward, so the loss has no KL term
# (`gae` too: PPO's critic values come from hybrid_rl/recipes/ppo.py, not from this registry).
ESTIMATORS: dict[str, Callable[[AdvantageInputs, AdvantageSettings], torch.Tensor]] = {
    "grpo": _grpo,
    "rloo": lambda inputs, s: rloo(inputs.rewards, inputs.group_size),
    "reinforce_pp": lambda inputs, s: reinforce_pp(inputs, s),
    "reinforce_pp_baseline": lambda inputs, s: reinforce_pp(inputs, s, baseline=True),
}
KL_IN_REWARD = frozenset({"reinforce_pp", "reinforce_pp_baseline", "gae"})


def per_completion(advantages: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """[N] one number per completion (the token mean of a per-token estimate), for logs."""
    if advantages.dim() == 1:
        return advantages
    mask = mask.to(advantages.dtype)
    return (advantages * mask).sum(1) / mask.sum(1).clamp(min=1)
