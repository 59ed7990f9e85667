"""One GRPO policy update over a scored rollout: mu optimizer passes, micro-batched.

Plain arguments only (no config tree). The loss maths lives in hybrid_rl/algo/grpo.py; how
gradients become a step (one process or DeepSpeed ZeRO) lives in hybrid_rl/runtime/engine.py.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Optional

import torch

from hybrid_rl.algo import grpo
from hybrid_rl.algo.logprobs import completion_logprobs
from hybrid_rl.rollout import RolloutBatch
from hybrid_rl.runtime import distributed
from hybrid_rl.runtime.engine import NonFiniteLoss

__all__ = ["NonFiniteLoss", "UpdateSettings", "grpo_update", "reference_logprobs",
           "sampled_logprobs"]
log = logging.getLogger("hybrid_rl")


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
    mask_truncated_completions: bool
    # Truncated importance sampling: weigh each token's loss by min(pi_trainer / pi_rollout, cap)
    # when the sampler (vLLM) and the trainer compute slightly different probabilities.
    tis_cap: Optional[float] = None
    # The sampler's truncation, applied to the policy's log-probs too (the ratio compares the
    # distribution sampled from; the KL term stays between whole distributions).
    top_k: int = 0
    top_p: float = 1.0
    importance_level: str = "token"  # token (PPO/GRPO) | sequence (GSPO)


def _micro_batches(n: int, size: int) -> list[slice]:
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


def _logprobs(model, batch: RolloutBatch, rows: slice, s: UpdateSettings, with_entropy=False,
              truncate=True):
    """`truncate=False` (the reference: only its whole distribution is used) skips the
    sampler's top-k/top-p, which sorts every position's vocabulary under top-p."""
    top_k, top_p = (s.top_k, s.top_p) if truncate else (0, 1.0)
    return completion_logprobs(
        model, batch.prompt_ids[rows], batch.prompt_mask[rows], batch.completion_ids[rows],
        batch.completion_mask[rows], s.temperature, with_entropy, top_k, top_p,
    )


@torch.no_grad()
def sampled_logprobs(model, batch: RolloutBatch, s: UpdateSettings) -> torch.Tensor:
    """[N, T] log-probs under the sampling distribution (truncated as the sampler's)."""
    return torch.cat([_logprobs(model, batch, mb, s).logp
                      for mb in _micro_batches(len(batch), s.micro_batch_size)])


@torch.no_grad()
def reference_logprobs(reference: torch.nn.Module, batch: RolloutBatch,
                       s: UpdateSettings) -> torch.Tensor:
    """[N, T] the frozen reference model's log-probs of the sampled tokens, under its whole
    temperature-scaled distribution (for the KL term)."""
    return torch.cat([_logprobs(reference, batch, mb, s, truncate=False).full
                      for mb in _micro_batches(len(batch), s.micro_batch_size)])


def _loss_scale(batch: RolloutBatch, loss_mask: torch.Tensor, s: UpdateSettings,
                num_mbs: int) -> grpo.LossScale:
    """Counts over the whole step. Under several processes each rank's gradient is averaged
    with the others', so the token count is the all-rank count divided by the rank count:
    token-level losses (dapo) then equal one big batch's exactly."""
    tokens = int(loss_mask.sum().item())
    world = distributed.world_size()
    if world > 1:
        tokens = distributed.sum_over_ranks(tokens) / world
    return grpo.LossScale(len(batch), tokens, s.max_completion_length, num_mbs)


def _sampler_agreement(logp: torch.Tensor, rollout_logp: torch.Tensor, mask: torch.Tensor,
                       into: dict) -> None:
    """Largest and mean |trainer - sampler| token log-prob gap (a vLLM engine with stale or
    differently-rounded weights shows up here)."""
    gap = (logp.detach() - rollout_logp).abs() * mask
    into["logprob_gap_max"] = max(into.get("logprob_gap_max", 0.0),
                                  float(gap.max()) if gap.numel() else 0.0)
    into["logprob_gap_sum"] = into.get("logprob_gap_sum", 0.0) + float(gap.sum())


def _importance_weights(logp: torch.Tensor, behaviour: torch.Tensor, mask: torch.Tensor,
                        into: dict) -> None:
    """Per-token pi_current / pi_behaviour before any step on this rollout: exactly 1 when
    the behaviour log-probs are the trainer's own, off 1 for an older policy's samples."""
    ratio = torch.exp(logp.detach() - behaviour) * mask
    into["is_weight_sum"] = into.get("is_weight_sum", 0.0) + float(ratio.sum())
    into["is_weight_tokens"] = into.get("is_weight_tokens", 0.0) + float(mask.sum())
    into["is_weight_max"] = max(into.get("is_weight_max", 0.0),
                                float(ratio.max()) if ratio.numel() else 0.0)


def grpo_update(
    engine, reference: Optional[torch.nn.Module], batch: RolloutBatch,
    advantages: torch.Tensor,  # [N] or [N, T]
    s: UpdateSettings,
    old_logprobs: Optional[torch.Tensor] = None,  # [N, T] the sampling policy's (PPO's epochs)
) -> dict[str, float]:
    """Run s.mu optimizer passes on one rollout; return statistics averaged over the passes.

    A non-finite loss or gradient in the first pass skips the whole update (NonFiniteLoss,
    nothing applied). In a later pass the earlier passes stand (each was a whole, finite
    step); that pass and the rest are skipped, and `skipped_passes` says how many."""
    loss_mask = batch.completion_mask.float()
    if s.mask_truncated_completions:
        loss_mask = loss_mask * (~batch.truncated).float().unsqueeze(1)
    mbs = _micro_batches(len(batch), s.micro_batch_size)
    scale = _loss_scale(batch, loss_mask, s, len(mbs))
    ref_logp = None
    if s.beta:  # computed while the verifiers scored (train.py), or now
        ref_logp = batch.reference_logprobs
        ref_logp = reference_logprobs(reference, batch, s) if ref_logp is None else ref_logp
    # With mu > 1 the ratio compares against the policy as it was at sampling time; with
    # mu == 1 that is the current policy, so its detached log-probs serve (ratio == 1), unless
    # the caller has them from before earlier steps (PPO's minibatches).
    old_logp = old_logprobs
    if old_logp is None and s.mu > 1:
        old_logp = sampled_logprobs(engine.model, batch, s)

    totals: dict[str, float] = {}
    done = 0
    engine.model.train()
    for epoch in range(s.mu):
        try:
            one = _one_pass(engine, batch, advantages, loss_mask, ref_logp, old_logp, mbs,
                            scale, s, compare_with_sampler=epoch == 0)
        except NonFiniteLoss as exc:
            if epoch == 0:
                raise
            log.warning("optimizer pass %d of %d: %s; it and the %d after it were skipped",
                        epoch + 1, s.mu, exc, s.mu - epoch - 1)
            break
        for k, v in one.items():
            totals[k] = totals.get(k, 0.0) + v
        done += 1
    return _summary(totals, batch, done, s.mu)


def _one_pass(engine, batch, advantages, loss_mask, ref_logp, old_logp, mbs, scale,
              s: UpdateSettings, compare_with_sampler: bool) -> dict[str, float]:
    """One optimizer step over every micro-batch; its summed statistics."""
    totals: dict[str, float] = {}
    engine.zero_grad()
    loss_sum = 0.0
    for i, mb in enumerate(mbs):
        logp, entropy, full = _logprobs(engine.model, batch, mb, s, with_entropy=True)
        rollout_logp = batch.rollout_logprobs[mb].to(logp.device)
        if compare_with_sampler:  # the weights that sampled this rollout
            _sampler_agreement(logp, rollout_logp, batch.completion_mask[mb].to(logp.device),
                               totals)
        behaviour = logp.detach() if old_logp is None else old_logp[mb]
        if compare_with_sampler:
            _importance_weights(logp, behaviour, loss_mask[mb].to(logp.device), totals)
        weights = (
            None
            if s.tis_cap is None
            else grpo.truncated_importance_weights(behaviour, rollout_logp, s.tis_cap)
        )
        loss, stats = grpo.policy_loss(
            logp, behaviour, None if ref_logp is None else ref_logp[mb],
            advantages[mb].to(logp.device), loss_mask[mb].to(logp.device),
            loss_type=s.loss_type, scale=scale, eps_low=s.epsilon, eps_high=s.epsilon_high,
            beta=s.beta, token_weights=weights, kl_logp=full, importance_level=s.importance_level,
        )
        if not distributed.all_ranks_true(bool(torch.isfinite(loss))):
            engine.discard_step(loss)
            raise NonFiniteLoss(f"non-finite loss {loss.item()} in a micro-batch; update skipped")
        engine.backward(loss, last=i == len(mbs) - 1)
        loss_sum += loss.item()
        stats["entropy_sum"] = (entropy * batch.completion_mask[mb].to(entropy.device)).sum()
        # k3 estimate of KL(old || current) before this step (0 on a fresh rollout): what a
        # target KL stops PPO's epochs on
        drift = grpo.kl_k3(logp.detach(), behaviour)
        stats["approx_kl_sum"] = (drift * loss_mask[mb].to(drift.device)).sum()
        for k, v in stats.items():
            totals[k] = totals.get(k, 0.0) + float(v)
    totals["grad_norm"] = engine.step()
    totals["loss"] = loss_sum
    return totals


def _summary(totals: dict[str, float], batch: RolloutBatch, passes: int,
             mu: int) -> dict[str, float]:
    """Statistics averaged over the passes applied."""
    active = max(totals.pop("active_tokens"), 1.0)
    sampled_tokens = batch.completion_mask.sum().item()
    out = {
        "loss": totals["loss"] / passes,
        "grad_norm": totals["grad_norm"] / passes,
        "clip_fraction/low": totals["clip_low_tokens"] / active,
        "clip_fraction/high": totals["clip_high_tokens"] / active,
        "clip_fraction/total": (totals["clip_low_tokens"] + totals["clip_high_tokens"]) / active,
        "entropy": totals["entropy_sum"] / (sampled_tokens * passes or 1),
        "approx_kl": totals["approx_kl_sum"] / active,
        "rollout/logprob_gap_max": totals["logprob_gap_max"],
        "rollout/logprob_gap_mean": totals["logprob_gap_sum"] / (sampled_tokens or 1),
        "rollout/is_weight_mean": totals["is_weight_sum"] / (totals["is_weight_tokens"] or 1),
        "rollout/is_weight_max": totals["is_weight_max"],
        "skipped_passes": float(mu - passes),
    }
    if "kl_sum" in totals:
        out["kl"] = totals["kl_sum"] / active
    return out
