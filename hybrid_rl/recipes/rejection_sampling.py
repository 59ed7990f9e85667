"""Rejection-sampling fine-tuning (best-of-N, as for Llama 2): `python rejection_sampling.py
task=math`.

train.py's loop (hybrid_rl/recipes/grpo.py) where a step is a round: sample
trainer.num_generations completions of trainer.prompts_per_step prompts with the current
policy, score them with the task's composed reward (the one GRPO uses), keep the best
`rejection.keep_top` distinct completions of each prompt among those that pass the task's
gates (and its accuracy signal, where that counts in the reward), and fine-tune on them with
the SFT loss for `rejection.epochs` passes. `rejection.rounds` rounds; a checkpoint after a
round resumes at the next one exactly.
"""
from __future__ import annotations

import random
import time

import torch
from omegaconf import DictConfig

from hybrid_rl.algo.update import NonFiniteLoss
from hybrid_rl.recipes import build, grpo
from hybrid_rl.recipes.dpo import sequence_logprobs
from hybrid_rl.recipes.run_report import closing_figures
from hybrid_rl.rewards.composition import SignalRule
from hybrid_rl.rollout import RolloutBatch
from hybrid_rl.runtime import distributed


def main(dcfg: DictConfig) -> float:
    # A step of the loop is a round of several optimizer steps: the loop counts rounds, and a
    # learning-rate schedule sized in loop steps would not fit, so the rate is constant.
    r = dcfg.rejection
    dcfg.trainer.max_steps, dcfg.eval.every_steps = r.rounds, r.eval_every_rounds
    dcfg.trainer.lr_schedule, dcfg.trainer.warmup_steps = "constant", 0
    return grpo.main(dcfg, LOOP)


PASS_MARK = 1.0  # an accuracy signal passes at this score (a verifier's "right")


def passes(values: dict, row: int, rules: dict[str, SignalRule], accuracy_signal: str) -> bool:
    """Whether a completion passes its task's gates, and its accuracy signal where that signal
    counts in the reward."""
    if any(rule.gate is not None and not rule.passes_gate(values[rule.gate][row])
           for rule in rules.values()):
        return False
    counted = rules.get(accuracy_signal)
    if counted is not None and counted.weight > 0:
        score = values[accuracy_signal][row]
        return score is not None and score >= PASS_MARK
    return True


def kept_rows(texts: list[str], reward: torch.Tensor, values: dict, tasks: list[str],
              rules: dict, accuracy_signals: dict, group_size: int, keep_top: int,
              min_reward: float | None) -> tuple[list[int], int]:
    """(rows kept, groups with at least one kept): per group the best `keep_top` distinct
    completions, best reward first (the first sampled among equals), of those eligible."""
    kept, groups = [], 0
    for start in range(0, len(texts), group_size):
        task = tasks[start]
        eligible = [i for i in range(start, start + group_size)
                    if passes(values, i, rules[task], accuracy_signals[task])
                    and (min_reward is None or reward[i].item() >= min_reward)]
        eligible.sort(key=lambda i: -reward[i].item())  # stable: the first sampled first
        picked, seen = [], set()
        for i in eligible:
            if texts[i] not in seen and len(picked) < keep_top:
                seen.add(texts[i])
                picked.append(i)
        kept += picked
        groups += bool(picked)
    return kept, groups


def sft_passes(run: grpo.Run, batch: RolloutBatch, weight: float) -> list[float]:
    """`rejection.epochs` passes of token-mean NLL over the kept completions, in shuffled
    minibatches, one optimizer step each; every process takes as many steps as the one with
    the most kept (cycling its own), as a DeepSpeed step needs. Returns the losses."""
    r = run.cfg.rejection
    rng = random.Random(f"{run.cfg.seed}-{run.step}-{distributed.rank()}")
    most = max(distributed.gather_objects(len(batch)))
    losses = []
    run.engine.model.train()
    for _ in range(r.epochs):
        order = list(range(len(batch)))
        rng.shuffle(order)
        for k in range(0, most, r.batch_size):
            rows = [order[j % len(order)] for j in range(k, min(k + r.batch_size, most))]
            part = batch.select(torch.tensor(rows))
            run.engine.zero_grad()
            loss = -sequence_logprobs(run.engine.model, part).sum() / part.completion_mask.sum()
            if not distributed.all_ranks_true(bool(torch.isfinite(loss))):
                run.engine.discard_step(loss)
                raise NonFiniteLoss(f"non-finite SFT loss {loss.item()}; round's update stopped")
            run.engine.backward(loss * weight, last=True)
            run.engine.step()
            losses.append(loss.item())
    return losses


def sft_summary(losses: list[float]) -> dict:
    return {"loss": sum(losses) / len(losses), "sft_steps": float(len(losses))}


def round_step(run: grpo.Run) -> dict:
    """One round: best-of-N sampling, keeping, fine-tuning."""
    cfg, t, r = run.cfg, run.cfg.trainer, run.cfg.rejection
    start = time.time()
    tasks = cfg.tasks()
    scored, m = grpo.scored_rollout(run)
    kept, groups = kept_rows(
        scored.batch.texts, scored.reward, scored.values, [s.task for s in scored.samples],
        run.composer.rules, {n: task.accuracy_signal for n, task in tasks.items()},
        t.num_generations, r.keep_top, r.min_reward)
    prompts = len(scored.reward) // t.num_generations
    m.update({"rejection/best_reward": scored.reward.view(-1, t.num_generations).max(1)
              .values.mean().item(), "rejection/keep_rate": groups / max(prompts, 1),
              "rejection/kept": float(len(kept))})
    sampled = time.time()
    if distributed.sum_over_ranks(len(kept)) > 0:  # one decision for every process
        weight = 1.0 if kept else 0.0  # a process with nothing kept takes part, weighing 0
        batch = scored.batch.select(torch.tensor(kept or [0]))
        m.update(grpo.skip_nonfinite(run, lambda: sft_summary(sft_passes(run, batch, weight))))
        m.update(grpo.sync_rollout_weights(run))
    return closing_figures(run, m, start, sampled)


LOOP = grpo.Loop("rejection sampling (rounds)", round_step,
                 lambda cfg, location, tokenizer, train: build.prompt_stream(cfg, train),
                 lambda cfg: False, lambda run: {})
