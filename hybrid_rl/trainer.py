"""One GRPO policy update over a scored rollout: mu optimizer passes, micro-batched.

Plain arguments only (no config tree). The loss maths lives in hybrid_rl/grpo.py.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from hybrid_rl import grpo
from hybrid_rl.logprobs import completion_logprobs
from hybrid_rl.rollout import RolloutBatch


@dataclass(frozen=True)
class UpdateSettings:
    loss_type: str
    epsilon: float
    epsilon_high: float
    beta: float
    mu: int
    micro_batch_size: int
    max_completion_length: int
    temperature: float
    max_grad_norm: float
    mask_truncated_completions: bool


class NonFiniteLoss(RuntimeError):
    """The loss or gradient was NaN or infinite; the update was skipped."""


def _micro_batches(n: int, size: int) -> list[slice]:
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


@torch.no_grad()
def _logprobs_no_grad(model, batch: RolloutBatch, temperature: float, size: int) -> torch.Tensor:
    parts = [
        completion_logprobs(model, batch.prompt_ids[s], batch.prompt_mask[s], batch.completion_ids[s],
                            batch.completion_mask[s], temperature)[0]
        for s in _micro_batches(len(batch), size)
    ]
    return torch.cat(parts)


def grpo_update(
    policy: torch.nn.Module,
    reference: Optional[torch.nn.Module],
    optimizer: torch.optim.Optimizer,
    scheduler,
    batch: RolloutBatch,
    advantages: torch.Tensor,  # [N]
    s: UpdateSettings,
) -> dict[str, float]:
    """Run s.mu optimizer steps on one rollout; return averaged statistics."""
    loss_mask = batch.completion_mask.float()
    if s.mask_truncated_completions:
        loss_mask = loss_mask * (~batch.truncated).float().unsqueeze(1)
    mbs = _micro_batches(len(batch), s.micro_batch_size)
    scale = grpo.LossScale(len(batch), int(loss_mask.sum().item()), s.max_completion_length, len(mbs))
    ref_logp = _logprobs_no_grad(reference, batch, s.temperature, s.micro_batch_size) if s.beta else None
    # With mu > 1 the ratio compares against the policy as it was at sampling time; with
    # mu == 1 that is the current policy, so its detached log-probs serve (ratio == 1).
    old_logp = _logprobs_no_grad(policy, batch, s.temperature, s.micro_batch_size) if s.mu > 1 else None

    totals: dict[str, float] = {}
    policy.train()
    for _ in range(s.mu):
        optimizer.zero_grad(set_to_none=True)
        loss_sum = 0.0
        for mb in mbs:
            logp, entropy = completion_logprobs(
                policy, batch.prompt_ids[mb], batch.prompt_mask[mb], batch.completion_ids[mb],
                batch.completion_mask[mb], s.temperature, with_entropy=True,
            )
            loss, stats = grpo.policy_loss(
                logp, logp.detach() if old_logp is None else old_logp[mb],
                None if ref_logp is None else ref_logp[mb], advantages[mb], loss_mask[mb],
                loss_type=s.loss_type, scale=scale, eps_low=s.epsilon, eps_high=s.epsilon_high, beta=s.beta,
            )
            if not torch.isfinite(loss):
                optimizer.zero_grad(set_to_none=True)
                raise NonFiniteLoss(f"non-finite loss {loss.item()} in a micro-batch; update skipped")
            loss.backward()
            loss_sum += loss.item()
            stats["entropy_sum"] = (entropy * batch.completion_mask[mb]).sum()
            for k, v in stats.items():
                totals[k] = totals.get(k, 0.0) + float(v)
        grad_norm = torch.nn.utils.clip_grad_norm_(
            policy.parameters(), s.max_grad_norm if s.max_grad_norm > 0 else float("inf")
        )
        if not torch.isfinite(grad_norm):
            optimizer.zero_grad(set_to_none=True)
            raise NonFiniteLoss(f"non-finite gradient norm {grad_norm.item()}; update skipped")
        optimizer.step()
        scheduler.step()
        totals["loss"] = totals.get("loss", 0.0) + loss_sum
        totals["grad_norm"] = totals.get("grad_norm", 0.0) + float(grad_norm)

    active = max(totals.pop("active_tokens"), 1.0)
    out = {
        "loss": totals["loss"] / s.mu,
        "grad_norm": totals["grad_norm"] / s.mu,
        "clip_fraction/low": totals["clip_low_tokens"] / active,
        "clip_fraction/high": totals["clip_high_tokens"] / active,
        "clip_fraction/total": (totals["clip_low_tokens"] + totals["clip_high_tokens"]) / active,
        "entropy": totals["entropy_sum"] / (batch.completion_mask.sum().item() * s.mu or 1),
    }
    if "kl_sum" in totals:
        out["kl"] = totals["kl_sum"] / active
    return out
