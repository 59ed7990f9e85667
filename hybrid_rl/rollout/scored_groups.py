"""One step's data: sample B prompts x G completions, score them, apply dynamic sampling."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Optional

import torch

from hybrid_rl.algo import grpo
from hybrid_rl.algo.advantages import per_completion
from hybrid_rl.data.samples import PromptStream, Sample
from hybrid_rl.rewards.composition import RewardComposer
from hybrid_rl.rewards.hacking import agreement
from hybrid_rl.rewards.scorer import RewardScorer
from hybrid_rl.rollout import RolloutBackend, RolloutBatch, concat_batches, generate_by_limit

DYNAMIC_SAMPLING = ("off", "drop", "fill")


@dataclass
class SampledRollout:
    """Everything sampled this step, before dynamic sampling dropped groups: what the policy
    did (accuracy, rewards, lengths are logged from here, not from the kept groups)."""

    values: dict[str, list]  # signal -> scores of every sampled completion
    reward: torch.Tensor  # [M] summed reward of every sampled completion
    parts: dict[str, torch.Tensor]  # signal -> [M] its weighted share
    lengths: torch.Tensor  # [M] completion tokens
    truncated: torch.Tensor  # [M] bool
    kept: int = 0  # completions kept for the update
    tasks: list = field(default_factory=list)  # [M] the task of each completion

    def add(self, values: dict, reward: torch.Tensor, parts: dict, batch: RolloutBatch,
            tasks: list) -> None:
        self.tasks += tasks
        for name, vals in values.items():
            self.values.setdefault(name, []).extend(vals)
        self.reward = torch.cat([self.reward, reward])
        for name, share in parts.items():
            self.parts[name] = torch.cat([self.parts.get(name, torch.zeros(0)), share])
        self.lengths = torch.cat([self.lengths, batch.completion_mask.sum(1).float()])
        self.truncated = torch.cat([self.truncated, batch.truncated])


def _empty_sampled() -> SampledRollout:
    return SampledRollout({}, torch.zeros(0), {}, torch.zeros(0), torch.zeros(0, dtype=torch.bool))


@dataclass
class ScoredRollout:
    samples: list[Sample]  # [N] the sample behind each completion (groups contiguous)
    batch: RolloutBatch  # [N] completions
    values: dict[str, list]  # signal -> [N] scores (None = not applicable)
    reward: torch.Tensor  # [N] weighted sum of the signals
    parts: dict[str, torch.Tensor]  # signal -> [N] its weighted (gated, normalised) share of reward
    errors: dict[str, int]  # signal -> failed checks, over every round
    timeouts: dict[str, int]  # signal -> checks that ran out of time, over every round
    all_equal_fraction: float  # share of sampled groups whose rewards were all equal
    # signal -> failures written to the failures file
    recorded: dict[str, int] = field(default_factory=dict)
    sampled: SampledRollout = field(default_factory=_empty_sampled)  # before groups were dropped


def sample_groups(
    stream: PromptStream,
    rollout: RolloutBackend,
    scorer: RewardScorer,
    composer: RewardComposer,
    *,
    prompts_per_step: int,
    group_size: int,
    pad_token_id: int,
    dynamic_sampling: str = "off",
    max_fill_rounds: int = 0,
    reference_logprobs: Optional[Callable[[RolloutBatch], torch.Tensor]] = None,
    completion_limits: Optional[dict[str, Optional[int]]] = None,
    produce: Optional[Callable[[int], tuple[list, RolloutBatch]]] = None,
) -> ScoredRollout:
    """With dynamic_sampling='drop', groups whose rewards are all equal (zero advantage) are
    removed; with 'fill', fresh prompts are sampled, up to max_fill_rounds more times, until
    prompts_per_step groups with signal are collected. `reference_logprobs(batch)`, when
    given, runs while the verifier pool scores, and its result rides on the batch.
    `completion_limits[task]`: a task's own max_new_tokens (a mixture's tasks may differ).
    `produce(prompts_per_step)`, when given, supplies (prompts, completions) sampled
    elsewhere (asynchronous rollouts) instead of `stream` and `rollout`."""
    if dynamic_sampling not in DYNAMIC_SAMPLING:
        raise ValueError("dynamic_sampling must be one of "
                         f"{DYNAMIC_SAMPLING}, got {dynamic_sampling!r}")
    target = prompts_per_step * group_size
    samples, batches, values, rewards, parts, errors, timeouts, recorded = (
        [], [], {}, [], {}, {}, {}, {},
    )
    seen = seen_equal = 0
    sampled = _empty_sampled()
    for _ in range(1 + (max_fill_rounds if dynamic_sampling == "fill" else 0)):
        prompts, batch = produce(prompts_per_step) if produce else generate_by_limit(
            rollout, stream.next(prompts_per_step), group_size, completion_limits or {},
            pad_token_id)
        group_samples = [s for s in prompts for _ in range(group_size)]

        def compute_reference(batch=batch):
            batch.reference_logprobs = reference_logprobs(batch)

        scores = scorer.score(group_samples, batch.texts,
                              meanwhile=compute_reference if reference_logprobs else None,
                              group_size=group_size)
        reward, shares = composer.combine(
            scores.values, [s.task for s in group_samples], group_size
        )
        sampled.add(scores.values, reward, shares, batch, [s.task for s in group_samples])
        equal = grpo.equal_reward_groups(reward, group_size)  # [B]
        seen, seen_equal = seen + len(prompts), seen_equal + int(equal.sum())
        keep = ~equal if dynamic_sampling != "off" else torch.ones_like(equal)
        rows = torch.arange(len(batch)).view(-1, group_size)[keep].reshape(-1)
        samples += [group_samples[i] for i in rows.tolist()]
        batches.append(batch.select(rows))
        rewards.append(reward[rows])
        for name, share in shares.items():
            parts.setdefault(name, []).append(share[rows])
        for name, vals in scores.values.items():
            values.setdefault(name, []).extend(vals[i] for i in rows.tolist())
        for name in scores.errors:
            errors[name] = errors.get(name, 0) + scores.errors[name]
            timeouts[name] = timeouts.get(name, 0) + scores.timeouts.get(name, 0)
            recorded[name] = recorded.get(name, 0) + scores.recorded.get(name, 0)
        if dynamic_sampling != "fill" or len(samples) >= target:
            break
    # 'fill' may overshoot; whole groups are kept since target is a multiple of G
    n = min(target, len(samples))
    sampled.kept = n
    return ScoredRollout(
        samples[:n], concat_batches(batches, pad_token_id).select(torch.arange(n)),
        {k: v[:n] for k, v in values.items()}, torch.cat(rewards)[:n], {k: torch.cat(v)[:n] for k,
                                                                        v in parts.items()},
        errors, timeouts, seen_equal / seen, recorded, sampled,
    )


def rollout_metrics(scored: ScoredRollout, accuracy_signal: str, proxy_signal: str,
                    group_size: int) -> dict[str, float]:
    """Every signal under its own name, its weighted share of the reward, and the agreement
    of the learned reward with the verifier (see README "Reward-hacking watch"). All of them
    describe everything sampled this step, before dynamic sampling dropped groups
    (`groups/kept_fraction` says how much of it the update saw)."""
    seen, errors = scored.sampled, scored.errors
    reward = seen.reward
    m = {"reward/total/mean": _mean(reward), "reward/total/std": _std(reward),
         "groups/all_equal_fraction": scored.all_equal_fraction,
         "groups/kept_fraction": seen.kept / len(reward) if len(reward) else math.nan}
    for name, vals in seen.values.items():
        applicable = torch.tensor([v for v in vals if v is not None])
        m[f"reward/{name}/mean"] = _mean(applicable)
        m[f"reward/{name}/std"] = _std(applicable)
        if name in errors:  # a signal, not a series reported beside one
            m[f"reward/{name}/errors"] = float(errors[name])
            m[f"reward/{name}/timeouts"] = float(scored.timeouts.get(name, 0))
        if name in seen.parts and len(reward):
            m[f"reward/{name}/weighted_mean"] = seen.parts[name].mean().item()
    proxy, verified = proxy_signal, accuracy_signal
    if proxy in seen.values and verified in seen.values and proxy != verified:
        agree = agreement(seen.values[proxy], seen.values[verified], group_size)
        m.update({f"hacking/{k}": v for k, v in agree.items()})
    m["accuracy"] = m.get(f"reward/{accuracy_signal}/mean", math.nan)
    m["completion/mean_length"] = _mean(seen.lengths)
    m["completion/max_length"] = seen.lengths.max().item() if len(seen.lengths) else math.nan
    m["completion/truncated_fraction"] = _mean(seen.truncated.float())
    return m


def task_metrics(scored: ScoredRollout, accuracy_signals: dict[str, str],
                 group_size: int) -> dict[str, float]:
    """Per task of a mixture, over everything sampled: task/<name>/reward (the summed reward),
    /accuracy (its accuracy signal's pass rate), /<signal> (each signal's mean where it
    applies), /all_equal_fraction (its groups whose rewards were all equal), /share (its
    share of the step's completions); and `accuracy`, every completion scored by its own
    task's accuracy signal, pooled."""
    seen = scored.sampled
    m = {}
    passed = []
    for task, accuracy_signal in accuracy_signals.items():
        rows = [i for i, t in enumerate(seen.tasks) if t == task]
        prefix = f"task/{task}"
        m[f"{prefix}/share"] = len(rows) / len(seen.tasks) if seen.tasks else math.nan
        if not rows:
            continue
        reward = seen.reward[rows]
        m[f"{prefix}/reward"] = _mean(reward)
        m[f"{prefix}/all_equal_fraction"] = grpo.equal_reward_groups(
            reward, group_size).float().mean().item()
        for name, vals in seen.values.items():
            applicable = torch.tensor([vals[i] for i in rows if vals[i] is not None])
            if len(applicable):
                m[f"{prefix}/{name}"] = _mean(applicable)
        m[f"{prefix}/accuracy"] = m.get(f"{prefix}/{accuracy_signal}", math.nan)
        vals = seen.values.get(accuracy_signal, [])
        passed += [vals[i] for i in rows if vals[i] is not None]
    m["accuracy"] = sum(passed) / len(passed) if passed else math.nan
    return m


def _mean(x: torch.Tensor) -> float:
    return x.mean().item() if len(x) else math.nan


def _std(x: torch.Tensor) -> float:
    return x.std().item() if len(x) > 1 else math.nan


def sample_rows(scored: ScoredRollout, adv: torch.Tensor, n: int) -> list[dict]:
    """The first n completions with everything needed to judge them by eye (a per-token
    advantage as its completion's token mean)."""
    adv = per_completion(adv, scored.batch.completion_mask)
    return [
        {
            "prompt": s.prompt,
            "completion": scored.batch.texts[i],
            "reference": s.reference,
            "reward": scored.reward[i].item(),
            "advantage": adv[i].item(),
            **{f"signal/{k}": v[i] for k, v in scored.values.items()},
        }
        for i, s in enumerate(scored.samples[:n])
    ]
