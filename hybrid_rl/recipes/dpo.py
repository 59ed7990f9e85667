"""Direct preference optimisation: `python dpo.py task=math`.

train.py's loop (hybrid_rl/recipes/grpo.py: setup, evaluations, checkpoints and exact resume,
metrics, DeepSpeed) with another step: the policy learns from (prompt, chosen, rejected)
pairs by a preference loss (hybrid_rl/algo/preference.py) instead of from advantages.
- dpo.pairs=on_policy (online DPO): each step samples trainer.num_generations completions of
  trainer.prompts_per_step prompts and pairs the best with the worst of each prompt by the
  task's composed reward, the same reward GRPO uses (verifiers, reward model, weights, gates);
  prompts whose completions tie give no pair.
- dpo.pairs=offline: pairs from dpo.data (the preference files train_rm.py reads, or
  rubric-labelled samples of the starting policy), trainer.prompts_per_step pairs a step; a
  held-out share of them measures the implicit reward's accuracy at every evaluation.
"""
from __future__ import annotations

import logging
import time
from dataclasses import fields

import torch
from omegaconf import DictConfig

from hybrid_rl.algo.logprobs import completion_logprobs
from hybrid_rl.algo.preference import (
    LOSSES,
    REFERENCE_FREE,
    LossSettings,
    PairLogprobs,
    implicit_rewards,
)
from hybrid_rl.algo.update import NonFiniteLoss
from hybrid_rl.data.samples import PromptStream
from hybrid_rl.recipes import build, grpo
from hybrid_rl.recipes.reward_model import preference_pairs
from hybrid_rl.recipes.run_report import closing_figures
from hybrid_rl.rollout import RolloutBatch, concat_batches
from hybrid_rl.runtime import distributed

log = logging.getLogger("hybrid_rl")

def main(dcfg: DictConfig) -> float:
    return grpo.main(dcfg, LOOP)


def uses_reference(cfg) -> bool:
    return cfg.dpo.loss not in REFERENCE_FREE


class PairStream(PromptStream):
    """Offline pairs in a resumable seeded order, with the pairs held out for validation."""

    def __init__(self, pairs: list, held: list, seed: int, shard: int, num_shards: int):
        super().__init__(pairs, seed, shard, num_shards)
        self.held = held


def training_stream(cfg, location: str, tokenizer, train: list):
    """on_policy: the task's prompts, as train.py draws them; offline: the pairs."""
    if cfg.dpo.pairs == "on_policy":
        return build.prompt_stream(cfg, train)
    pairs, held = preference_pairs(cfg, location, tokenizer, train, cfg.dpo.data,
                                   cfg.dpo.eval_fraction)
    d = cfg.dpo.data
    origin = d.path if d.source != "generator" else "rubric-labelled starting-policy samples"
    log.info("[dpo] %d training and %d held-out pairs from %s", len(pairs), len(held), origin)
    return PairStream(pairs, held, cfg.seed, distributed.rank(), distributed.world_size())


def encode_pairs(tokenizer, prompts: list[str], completions: list[str],
                 max_length: int | None = None) -> RolloutBatch:
    """Texts -> a batch as the rollout makes it: prompts left-padded, completions (with EOS)
    right-padded. A pair longer than `max_length` tokens (the model's context) loses the start
    of its prompt, then the end of its completion: the answer is judged, the question is context."""
    c_ids = [tokenizer(c, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
             for c in completions]
    p_ids = [tokenizer(p, add_special_tokens=False)["input_ids"] or [tokenizer.eos_token_id]
             for p in prompts]  # an empty prompt is conditioned on EOS, as generate() would
    if max_length is not None:
        c_ids = [c[: max_length - 1] for c in c_ids]
        p_ids = [p[len(p) + len(c) - max_length:] if len(p) + len(c) > max_length else p
                 for p, c in zip(p_ids, c_ids)]
    n, P, T = len(prompts), max(map(len, p_ids)), max(map(len, c_ids))
    pad = tokenizer.pad_token_id
    prompt_ids, prompt_mask = torch.full((n, P), pad), torch.zeros((n, P), dtype=torch.long)
    completion_ids = torch.full((n, T), pad)
    completion_mask = torch.zeros((n, T), dtype=torch.long)
    for i, (p, c) in enumerate(zip(p_ids, c_ids)):
        prompt_ids[i, P - len(p):], prompt_mask[i, P - len(p):] = torch.tensor(p), 1
        completion_ids[i, : len(c)], completion_mask[i, : len(c)] = torch.tensor(c), 1
    return RolloutBatch(prompt_ids, prompt_mask, completion_ids, completion_mask,
                        torch.zeros((n, T)), torch.zeros(n, dtype=torch.bool), list(completions))


def encoded(run: grpo.Run, pairs: list) -> tuple[RolloutBatch, RolloutBatch]:
    """(chosen, rejected) batches of offline pairs, each fitted to the policy's context."""
    context = getattr(run.policy.config, "max_position_embeddings", None)
    prompts = [p.prompt for p in pairs]
    return (encode_pairs(run.tokenizer, prompts, [p.chosen for p in pairs], context),
            encode_pairs(run.tokenizer, prompts, [p.rejected for p in pairs], context))


def best_and_worst(reward: torch.Tensor, group_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Row indices of each group's highest and lowest reward (the first of ties), for the
    groups whose rewards are not all equal."""
    groups = reward.view(-1, group_size)
    differ = groups.max(1).values > groups.min(1).values
    offsets = torch.arange(len(groups)) * group_size
    best, worst = groups.argmax(1) + offsets, groups.argmin(1) + offsets
    return best[differ], worst[differ]


def sequence_logprobs(model, batch: RolloutBatch) -> torch.Tensor:
    """[N] summed log-probs of each completion (untempered: DPO's pi(y|x))."""
    logp = completion_logprobs(model, batch.prompt_ids, batch.prompt_mask, batch.completion_ids,
                               batch.completion_mask).full
    return (logp * batch.completion_mask.to(logp.device)).sum(1)


def pair_logprobs(run: grpo.Run, chosen: RolloutBatch, rejected: RolloutBatch) -> PairLogprobs:
    both = concat_batches([chosen, rejected], run.tokenizer.pad_token_id)
    policy = sequence_logprobs(run.engine.model, both)
    lengths = both.completion_mask.sum(1).float().to(policy.device)
    ref = None
    if run.reference is not None:
        with torch.no_grad():
            ref = sequence_logprobs(run.reference, both)
    n = len(chosen)
    return PairLogprobs(policy[:n], policy[n:], lengths[:n], lengths[n:],
                        None if ref is None else ref[:n], None if ref is None else ref[n:])


def loss_settings(cfg) -> LossSettings:
    d = cfg.dpo
    return LossSettings(d.beta, d.label_smoothing, d.simpo_gamma, d.orpo_lambda)


def pair_metrics(p: PairLogprobs, loss: torch.Tensor, beta: float, prefix: str) -> dict:
    chosen, rejected = implicit_rewards(p, beta)
    margin = (chosen - rejected).detach()
    return {f"{prefix}loss": loss.item(), f"{prefix}rewards/chosen": chosen.mean().item(),
            f"{prefix}rewards/rejected": rejected.mean().item(),
            f"{prefix}rewards/margin": margin.mean().item(),
            f"{prefix}rewards/accuracy": (margin > 0).float().mean().item(),
            f"{prefix}logps/chosen": p.chosen.detach().mean().item(),
            f"{prefix}logps/rejected": p.rejected.detach().mean().item()}


def dpo_update(run: grpo.Run, chosen: RolloutBatch, rejected: RolloutBatch,
               weight: float = 1.0) -> dict:
    """One optimizer step on the pairs, the loss times `weight` (0: this process has no pair
    but takes part, as every process must in a DeepSpeed step). Raises NonFiniteLoss, with
    nothing applied on any process, when a loss is not finite."""
    cfg = run.cfg
    run.engine.model.train()
    run.engine.zero_grad()
    p = pair_logprobs(run, chosen, rejected)
    loss = LOSSES[cfg.dpo.loss](p, loss_settings(cfg)).mean()
    if not distributed.all_ranks_true(bool(torch.isfinite(loss))):
        run.engine.discard_step(loss)
        raise NonFiniteLoss(f"non-finite {cfg.dpo.loss} loss {loss.item()}; update skipped")
    run.engine.backward(loss * weight, last=True)
    grad_norm = run.engine.step()
    return {**pair_metrics(p, loss, cfg.dpo.beta, ""), "grad_norm": grad_norm,
            "pairs": float(len(chosen)) * weight}


def dpo_step(run: grpo.Run) -> dict:
    """Pairs (sampled and ranked, or read), then one preference-loss update."""
    cfg, t = run.cfg, run.cfg.trainer
    start = time.time()
    if cfg.dpo.pairs == "on_policy":
        m, chosen, rejected, sampled_batch = on_policy_pairs(run)
    else:
        chosen, rejected = encoded(run, run.stream.next(t.prompts_per_step))
        m = {}
    sampled = time.time()
    if distributed.sum_over_ranks(len(chosen)) > 0:  # one decision for every process
        weight = 1.0
        if not len(chosen):  # its prompts' samples all tied: a stand-in pair that weighs 0
            chosen = rejected = sampled_batch.select(torch.tensor([0]))
            weight = 0.0
        m.update(grpo.skip_nonfinite(run, lambda: dpo_update(run, chosen, rejected, weight)))
        m.update(grpo.sync_rollout_weights(run))
    return closing_figures(run, m, start, sampled)


def on_policy_pairs(run: grpo.Run) -> tuple[dict, RolloutBatch, RolloutBatch, RolloutBatch]:
    """(metrics, chosen, rejected, everything sampled) of one step's groups."""
    t = run.cfg.trainer
    scored, m = grpo.scored_rollout(run)
    best, worst = best_and_worst(scored.reward, t.num_generations)
    m["pairs/kept_fraction"] = len(best) / max(len(scored.reward) // t.num_generations, 1)
    return m, scored.batch.select(best), scored.batch.select(worst), scored.batch


@torch.no_grad()
def held_pair_metrics(run: grpo.Run) -> dict:
    """Offline pairs: the loss and implicit-reward accuracy on the held-out pairs."""
    held = getattr(run.stream, "held", None)
    if not held:
        return {}
    run.engine.model.eval()
    parts, size = [], run.cfg.eval.batch_size
    for i in range(0, len(held), size):
        parts.append(pair_logprobs(run, *encoded(run, held[i : i + size])))
    p = PairLogprobs(**{f.name: None if getattr(parts[0], f.name) is None
                        else torch.cat([getattr(q, f.name) for q in parts])
                        for f in fields(PairLogprobs)})
    loss = LOSSES[run.cfg.dpo.loss](p, loss_settings(run.cfg)).mean()
    return pair_metrics(p, loss, run.cfg.dpo.beta, "eval/pairs/")


LOOP = grpo.Loop("DPO", dpo_step, training_stream, uses_reference, held_pair_metrics)
