"""PPO with a value model: `python train.py trainer=ppo task=math`.

train.py's loop (hybrid_rl/recipes/grpo.py: setup, evaluations, checkpoints with exact
resume, metrics, DeepSpeed) with PPO's step and a critic beside the policy:
1. sample and score as GRPO does (the task's composed reward, any signals, mixtures);
2. per-token rewards in the InstructGPT form: -beta (log pi_old - log pi_ref) at every token
   (the KL is in the reward, so the loss has none), plus the composed reward at the last;
3. the critic's values of the states the tokens were sampled from, GAE (gamma, lambda) for
   advantages and returns, the advantages whitened over the batch's tokens;
4. trainer.mu epochs over the rollout, each in critic.minibatches shuffled minibatches; a
   minibatch is one clipped-policy step (GRPO's update, per-token advantages) and one clipped
   value-loss step of the critic; the epochs stop once a minibatch's approximate KL from the
   sampling policy passes critic.target_kl. The first critic.warmup_steps train the critic only.
"""
from __future__ import annotations

import dataclasses
import logging
import time

import torch

from hybrid_rl.algo.advantages import gae, token_rewards, whiten
from hybrid_rl.algo.optim import make_scheduler
from hybrid_rl.algo.ppo import explained_variance, value_loss
from hybrid_rl.algo.update import (
    NonFiniteLoss,
    grpo_update,
    reference_logprobs,
    sampled_logprobs,
)
from hybrid_rl.models import lora
from hybrid_rl.models.loading import load_policy
from hybrid_rl.models.value import (
    ValueModel,
    completion_values,
    critic_from_folder,
    critic_from_policy,
    start_from_reward_model,
)
from hybrid_rl.recipes import async_rollout, build, grpo
from hybrid_rl.recipes.run_report import closing_figures
from hybrid_rl.rollout import RolloutBatch
from hybrid_rl.runtime import distributed
from hybrid_rl.runtime.engine import make_engine

log = logging.getLogger("hybrid_rl")


def build_critic(run: grpo.Run, location: str, reward_model: str | None, state: dict) -> None:
    """The critic's engine into run.extras["critic"]: from the checkpoint when resuming, else
    from critic.model, the reward model (same architecture) or the starting policy's trunk.
    With model.lora its trunk trains LoRA adapters (the head trains whole) and a checkpoint
    keeps only those: on resume the frozen trunk is rebuilt from where it first came from."""
    cfg, c = run.cfg, run.cfg.trainer.critic
    adapters = cfg.model.lora.enabled
    critic = critic_from_folder(c.model) if c.model else critic_from_policy(
        load_policy(location, dtype=cfg.model.dtype))
    saved = state.get("critic")
    if (saved is None or adapters) and c.init_from_reward_model and reward_model is not None \
            and not c.model:
        from transformers import AutoModelForSequenceClassification

        from hybrid_rl.rewards.learned.ensemble import first_member

        start_from_reward_model(critic, AutoModelForSequenceClassification.from_pretrained(
            first_member(reward_model)))  # an ensemble's first member
    if adapters:
        critic.trunk = lora.add_adapters(critic.trunk, cfg.model.lora, task_type=None)
    if saved is not None:
        load_critic_weights(critic, saved["weights"])
    critic = critic.to(distributed.device())
    optimizer = build.make_policy_optimizer(cfg, critic, c.learning_rate, 0.0)
    engine = make_engine(critic, optimizer, make_scheduler(optimizer, "constant", 0, 1),
                         deepspeed=build.deepspeed_settings(cfg),
                         micro_batch_size=cfg.trainer.micro_batch_size,
                         max_grad_norm=cfg.trainer.max_grad_norm)
    if saved is not None:
        engine.load_optimizer_state(saved["optimizer"])
    run.extras["critic"] = engine
    n = sum(getattr(p, "ds_numel", p.numel()) for p in critic.parameters())
    trained = sum(getattr(p, "ds_numel", p.numel()) for p in critic.parameters()
                  if p.requires_grad)
    log.info("[critic] value model of %.2fM parameters (%.2fM trained%s), learning rate %g",
             n / 1e6, trained / 1e6, ": LoRA adapters and the head" if adapters else "",
             c.learning_rate)


def load_critic_weights(critic: ValueModel, weights: dict) -> None:
    """A checkpoint's critic weights: every one, or with LoRA every trained one (the frozen
    trunk is not saved)."""
    trained = {name for name, p in critic.named_parameters() if p.requires_grad}
    adapters = lora.has_adapters(critic.trunk)
    missing, unexpected = critic.load_state_dict(weights, strict=False)
    lacking = [name for name in missing if name in trained or not adapters]
    if lacking or unexpected:
        raise ValueError(f"the checkpoint's critic does not fit this critic (model.lora and "
                         f"trainer.critic as when it was saved?): missing {lacking[:3]}, "
                         f"unexpected {unexpected[:3]}")


def critic_state(run: grpo.Run) -> dict:
    """Weights and optimizer state of the critic (collective under DeepSpeed)."""
    engine = run.extras["critic"]
    weights = engine.full_state_dict()
    if run.cfg.model.lora.enabled:  # the frozen trunk comes back from its source on resume
        trained = {name for name, p in engine.module.named_parameters() if p.requires_grad}
        weights = {name: w for name, w in weights.items() if name in trained}
    return {"critic": {"weights": weights,
                       "optimizer": engine.optimizer_state()}}


@torch.no_grad()
def batch_values(critic: ValueModel, batch: RolloutBatch, size: int) -> torch.Tensor:
    return torch.cat([completion_values(critic, batch.prompt_ids[i : i + size],
                                        batch.prompt_mask[i : i + size],
                                        batch.completion_ids[i : i + size],
                                        batch.completion_mask[i : i + size]).float().cpu()
                      for i in range(0, len(batch), size)])


def critic_step(engine, batch: RolloutBatch, old_values, returns, clip, size: int) -> dict:
    """One optimizer step of the clipped value loss over a minibatch (micro-batched, the
    token mean of the whole minibatch)."""
    engine.model.train()
    engine.zero_grad()
    mask = batch.completion_mask.float()
    tokens, loss_sum, clipped = max(float(mask.sum()), 1.0), 0.0, 0.0
    parts = [slice(i, min(i + size, len(batch))) for i in range(0, len(batch), size)]
    for k, mb in enumerate(parts):
        values = completion_values(engine.model, batch.prompt_ids[mb], batch.prompt_mask[mb],
                                   batch.completion_ids[mb], batch.completion_mask[mb])
        device = values.device
        loss, share = value_loss(values, old_values[mb].to(device), returns[mb].to(device),
                                 mask[mb].to(device), clip)
        weight = float(mask[mb].sum()) / tokens
        if not distributed.all_ranks_true(bool(torch.isfinite(loss))):
            engine.discard_step(loss)
            raise NonFiniteLoss(f"non-finite value loss {loss.item()}; critic step skipped")
        engine.backward(loss * weight, last=k == len(parts) - 1)
        loss_sum, clipped = loss_sum + loss.item() * weight, clipped + float(share) * weight
    return {"value_loss": loss_sum, "value_clip_fraction": clipped,
            "critic/grad_norm": engine.step()}


def advantages_and_returns(run: grpo.Run, batch: RolloutBatch, reward: torch.Tensor,
                           values: torch.Tensor, old: torch.Tensor) -> tuple:
    """(advantages, returns, metrics): GAE on the InstructGPT per-token reward, its KL taken
    between whole distributions (the sampler's `old` serves when it truncates nothing)."""
    t, c, s = run.cfg.trainer, run.cfg.trainer.critic, run.settings
    mask = batch.completion_mask.float()
    ref = batch.reference_logprobs if t.beta else None
    if ref is not None and (s.top_k or s.top_p < 1.0):
        old = reference_logprobs(run.engine.model, batch, s)
    rewards = token_rewards(reward, mask, old, ref, t.beta if ref is not None else 0.0)
    adv, returns = gae(rewards, values, mask, c.gamma, c.lam)
    if c.whiten_advantages:
        adv = whiten(adv, mask, t.advantage_eps, distributed.sum_over_ranks)
    m = {"returns/mean": float((returns * mask).sum() / mask.sum().clamp(min=1)),
         "values/mean": float((values * mask).sum() / mask.sum().clamp(min=1)),
         "explained_variance": explained_variance(values, returns, mask)}
    if ref is not None:
        kl = (old - ref).to(mask.device, mask.dtype)  # the models' device -> the batch's
        m["kl_per_token"] = float((kl * mask).sum() / mask.sum().clamp(min=1))
    return adv, returns, m


def ppo_update(run: grpo.Run, batch: RolloutBatch, reward: torch.Tensor) -> dict:
    """Epochs of minibatches over one rollout; statistics averaged over the steps taken. A
    non-finite loss before any step skips the update (NonFiniteLoss); after one, the steps
    taken stand and the rest are skipped."""
    t = run.cfg.trainer
    values = batch_values(run.extras["critic"].model, batch, t.micro_batch_size)
    old = async_rollout.behaviour_logprobs(run, batch)  # an older policy's (asynchronous)
    if old is None:  # the sampling distribution under the current weights
        old = sampled_logprobs(run.engine.model, batch, run.settings)
    adv, returns, m = advantages_and_returns(run, batch, reward, values, old)
    taken: list[dict] = []  # each minibatch step's statistics
    try:
        minibatch_steps(run, batch, adv, returns, values, old, taken)
    except NonFiniteLoss as exc:
        if not taken:
            raise
        log.warning("PPO step %d: %s; the %d minibatch steps taken stand", run.step + 1, exc,
                    len(taken))
    m.update({k: sum(s[k] for s in taken) / len(taken) for k in taken[0]})
    # the sampler's agreement with the trainer holds before the first step only
    m.update({k: v for k, v in taken[0].items() if k.startswith("rollout/logprob_gap")})
    m.update({"ppo/minibatch_steps": float(len(taken)),
              "ppo/policy_trained": float(run.step >= t.critic.warmup_steps)})
    return m


def minibatch_steps(run: grpo.Run, batch: RolloutBatch, adv, returns, values, old,
                    taken: list) -> None:
    """trainer.mu epochs of critic.minibatches shuffled minibatches, appending each step's
    statistics to `taken`; stops once a minibatch's approximate KL passes critic.target_kl."""
    t, c = run.cfg.trainer, run.cfg.trainer.critic
    one_pass = dataclasses.replace(run.settings, mu=1)  # the ratio against `old`, given
    train_policy = run.step >= c.warmup_steps
    for _ in range(t.mu):
        order = torch.randperm(len(batch))
        for rows in torch.tensor_split(order, min(c.minibatches, len(batch))):
            part = batch.select(rows)
            stats = (grpo_update(run.engine, None, part, adv[rows], one_pass, old[rows])
                     if train_policy else {})
            stats.update(critic_step(run.extras["critic"], part, values[rows], returns[rows],
                                     c.value_clip, t.micro_batch_size))
            taken.append(stats)
            if c.target_kl is not None and stats.get("approx_kl", 0.0) > c.target_kl:
                return


def ppo_step(run: grpo.Run) -> dict:
    """Rollout -> rewards -> values and GAE -> epochs of policy and critic steps."""
    t = run.cfg.trainer
    start = time.time()
    scored, m = grpo.scored_rollout(  # every group: no dynamic sampling (config check)
        run, reference_logprobs=(lambda b: reference_logprobs(run.reference, b, run.settings))
        if run.reference is not None and t.beta else None)
    sampled = time.time()
    if len(scored.batch):
        m.update(grpo.skip_nonfinite(run, lambda: ppo_update(run, scored.batch, scored.reward)))
        m.update(grpo.sync_rollout_weights(run))
    return closing_figures(run, m, start, sampled)


LOOP = grpo.Loop("PPO", ppo_step,
                 lambda cfg, location, tokenizer, train: build.prompt_stream(cfg, train),
                 lambda cfg: cfg.trainer.beta > 0, lambda run: {},
                 setup=build_critic, state=critic_state)
