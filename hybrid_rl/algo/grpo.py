"""The GRPO mathematics as pure tensor functions (torch only, no model, no config).

Definitions follow GRPO.md in the design notes: group-relative advantages, a PPO-style
clipped surrogate with separate lower/upper bounds (DAPO "clip-higher"), the k3 KL
estimator against a frozen reference, and four ways of aggregating token losses.

Shapes: S = sequences (completions) in a micro-batch, T = completion tokens (padded),
N = completions in a whole rollout batch (= prompts x group size).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

ADVANTAGE_SCALES = ("group", "batch", "none")
STD_ESTIMATORS = ("sample", "population")


def _std(x: torch.Tensor, dim: int | None, estimator: str) -> torch.Tensor:
    # sample = unbiased (divides by n - 1, torch's default, what TRL uses);
    # population = divides by n. Both are in use, so the choice is explicit.
    if estimator not in STD_ESTIMATORS:
        raise ValueError(f"std estimator must be one of {STD_ESTIMATORS}, got {estimator!r}")
    correction = 1 if estimator == "sample" else 0
    if dim is None:
        return x.std(correction=correction)
    return x.std(dim=dim, correction=correction)


def group_advantages(
    rewards: torch.Tensor,  # [N], groups of `group_size` consecutive completions
    group_size: int, scale: str = "group", std_estimator: str = "sample", eps: float = 1e-4,
) -> torch.Tensor:  # [N]
    """Outcome advantages: reward minus its group mean, optionally divided by a std.

    scale="group": (R - mean_g) / (std_g + eps)  (GRPO, DeepSeekMath)
    scale="batch": (R - mean_g) / (std over the whole batch + eps)
    scale="none":  R - mean_g                    (Dr. GRPO)
    """
    if scale not in ADVANTAGE_SCALES:
        raise ValueError(f"advantage scale must be one of {ADVANTAGE_SCALES}, got {scale!r}")
    if rewards.dim() != 1 or rewards.numel() % group_size:
        raise ValueError(
            f"rewards must be 1-D with a multiple of group_size={group_size} entries, "
            f"got shape {tuple(rewards.shape)}"
        )
    grouped = rewards.view(-1, group_size)  # [B, G]
    centred = grouped - grouped.mean(dim=1, keepdim=True)
    if scale == "group":
        centred = centred / (_std(grouped, 1, std_estimator).unsqueeze(1) + eps)
    elif scale == "batch":
        centred = centred / (_std(rewards, None, std_estimator) + eps)
    return centred.reshape(-1)


def equal_reward_groups(rewards: torch.Tensor, group_size: int, atol: float = 1e-8) -> torch.Tensor:
    """[B] bool: groups whose rewards are all equal, which carry zero advantage (no signal)."""
    grouped = rewards.view(-1, group_size)
    return (grouped.max(dim=1).values - grouped.min(dim=1).values) <= atol


def kl_k3(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """[S, T] k3 estimator of KL(pi_theta || pi_ref): exp(d) - d - 1 with d = ref - logp (>= 0)."""
    delta = ref_logp - logp
    return torch.exp(delta) - delta - 1.0


IMPORTANCE_LEVELS = ("token", "sequence")


def importance_ratio(logp: torch.Tensor, old_logp: torch.Tensor, mask: torch.Tensor,
                     level: str = "token") -> torch.Tensor:
    """[S, T] pi_theta / pi_old. token: per token (PPO, GRPO). sequence (GSPO, Zheng et al.
    2025, its GSPO-token form): every token of completion i carries s_i, the geometric mean of
    its token ratios exp(1/|o_i| sum_t (logp_t - old_t)), with the gradient of logp_t, so
    s_it = sg(s_i) * exp(logp_t - sg(logp_t))."""
    if level == "token":
        return torch.exp(logp - old_logp)
    if level != "sequence":
        raise ValueError(f"importance level must be one of {IMPORTANCE_LEVELS}, got {level!r}")
    mask = mask.to(logp.dtype)
    mean_log_ratio = ((logp - old_logp) * mask).sum(1) / mask.sum(1).clamp(min=1)
    sequence = torch.exp(mean_log_ratio).detach().unsqueeze(1)
    return sequence * torch.exp(logp - logp.detach())


def clipped_surrogate(
    logp: torch.Tensor,  # [S, T] current policy
    old_logp: torch.Tensor,  # [S, T] policy that sampled the rollout
    advantages: torch.Tensor,  # [S] one value per completion, or [S, T] one per token
    eps_low: float, eps_high: float,
    mask: torch.Tensor | None = None,  # [S, T] completion tokens (needed at sequence level)
    level: str = "token",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-token -min(r A, clip(r, 1-eps_low, 1+eps_high) A) and where each bound was active;
    r is the token's or (GSPO) the sequence's ratio (`importance_ratio`)."""
    ratio = importance_ratio(logp, old_logp, torch.ones_like(logp) if mask is None else mask,
                             level)
    adv = advantages.unsqueeze(1) if advantages.dim() == 1 else advantages  # [S, 1] broadcasts
    unclipped = ratio * adv
    clipped = torch.clamp(ratio, 1.0 - eps_low, 1.0 + eps_high) * adv
    loss = -torch.min(unclipped, clipped)
    # The clip changes the objective only where it binds: below 1-eps_low for negative
    # advantages, above 1+eps_high for positive ones.
    low_active = (ratio < 1.0 - eps_low) & (adv < 0)
    high_active = (ratio > 1.0 + eps_high) & (adv > 0)
    return loss, low_active, high_active


@dataclass(frozen=True)
class LossScale:
    """Batch-wide counts the aggregations need, so that splitting a rollout into
    micro-batches (gradient accumulation) gives the same gradient as one big batch."""

    num_sequences: int  # completions in the whole optimizer step
    num_tokens: int  # active completion tokens in the whole optimizer step
    max_completion_length: int  # the configured generation limit (dr_grpo's constant)
    num_microbatches: int = 1


def _agg_grpo(loss_tok, mask, scale: LossScale):
    per_seq = (loss_tok * mask).sum(1) / mask.sum(1).clamp(min=1)
    return per_seq.sum() / scale.num_sequences


def _agg_bnpo(loss_tok, mask, scale: LossScale):
    return (loss_tok * mask).sum() / mask.sum().clamp(min=1) / scale.num_microbatches


def _agg_dapo(loss_tok, mask, scale: LossScale):
    return (loss_tok * mask).sum() / max(scale.num_tokens, 1)


def _agg_dr_grpo(loss_tok, mask, scale: LossScale):
    return (loss_tok * mask).sum() / (scale.num_sequences * scale.max_completion_length)


# Registered by name: a new variant is one function and one entry here.
LOSS_AGGREGATIONS: dict[str, Callable[[torch.Tensor, torch.Tensor, LossScale], torch.Tensor]] = {
    "grpo": _agg_grpo,  # 1/G sum_i 1/|o_i| sum_t: per-sequence mean (length-biased)
    "bnpo": _agg_bnpo,  # tokens of the local micro-batch / its active tokens
    "dapo": _agg_dapo,  # tokens / active tokens of the whole step (token-level)
    "dr_grpo": _agg_dr_grpo,  # tokens / (sequences x max completion length), a constant
}


def policy_loss(
    logp: torch.Tensor,  # [S, T]
    old_logp: torch.Tensor,  # [S, T]
    ref_logp: torch.Tensor | None,  # [S, T] or None when beta == 0
    advantages: torch.Tensor,  # [S], or [S, T] from a per-token estimator
    mask: torch.Tensor,  # [S, T] 1 for completion tokens that count
    *, loss_type: str, scale: LossScale, eps_low: float = 0.2, eps_high: float = 0.2,
    beta: float = 0.0, importance_level: str = "token",
    token_weights: torch.Tensor | None = None,  # [S, T] e.g. truncated importance weights
    kl_logp: torch.Tensor | None = None,  # [S, T] the policy's log-probs for the KL (else logp)
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """GRPO loss of one micro-batch and its statistics (sums, so callers can add micro-batches).
    `kl_logp` serves when `logp` is under a truncated (top-k/top-p) distribution: the KL is
    taken between whole distributions."""
    if loss_type not in LOSS_AGGREGATIONS:
        raise ValueError(f"loss_type must be one of {sorted(LOSS_AGGREGATIONS)}, got {loss_type!r}")
    mask = mask.to(logp.dtype)
    loss_tok, low, high = clipped_surrogate(logp, old_logp, advantages, eps_low, eps_high,
                                            mask, importance_level)
    if token_weights is not None:
        loss_tok = loss_tok * token_weights
    stats = {
        "clip_low_tokens": (low.to(mask.dtype) * mask).sum().detach(),
        "clip_high_tokens": (high.to(mask.dtype) * mask).sum().detach(),
        "active_tokens": mask.sum().detach(),
    }
    if beta != 0.0:
        if ref_logp is None:
            raise ValueError("beta != 0 needs reference log-probs")
        kl = kl_k3(logp if kl_logp is None else kl_logp, ref_logp)
        loss_tok = loss_tok + beta * kl
        stats["kl_sum"] = (kl * mask).sum().detach()
    loss = LOSS_AGGREGATIONS[loss_type](loss_tok, mask, scale)
    return loss, stats


def entropy_of_log_softmax(logp: torch.Tensor) -> torch.Tensor:
    """[S, T, V] log-probabilities (a log-softmax: stable) -> [S, T] entropy -sum_v p log p."""
    return -(logp.exp() * logp).sum(-1)


def truncated_importance_weights(
    trainer_logp: torch.Tensor, rollout_logp: torch.Tensor, cap: float
) -> torch.Tensor:
    """min(exp(trainer - rollout), cap): corrects for a sampler whose log-probs differ."""
    return torch.exp(trainer_logp - rollout_logp).clamp(max=cap)
