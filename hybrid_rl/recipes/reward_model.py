"""Reward-model training: `python train_rm.py` (Bradley-Terry on preference pairs; README
"Learned preference reward"), and the default reward model train.py builds for a task whose
signals include `verifier: preference`.

Reads top to bottom: pairs (read from files, or the starting policy's own samples labelled by
the rubric), Bradley-Terry training, a Hugging Face folder with its pairs and validation
metrics.
"""
from __future__ import annotations

import json
import logging
import math
import random
from dataclasses import asdict
from pathlib import Path
from typing import Optional

import torch
from omegaconf import DictConfig

from hybrid_rl.config.checks import ConfigError
from hybrid_rl.config.reward import PreferenceDataConfig
from hybrid_rl.config.schema import RecipeConfig
from hybrid_rl.data.samples import DataError, Sample
from hybrid_rl.models.loading import load_policy, publish_folder, settings_key
from hybrid_rl.recipes import build
from hybrid_rl.rewards.learned.ensemble import (
    is_ensemble,
    member_folder,
    standardisation,
    standardised,
)
from hybrid_rl.rewards.learned.fit import FitSettings, evaluate_pairs, fit_reward_model
from hybrid_rl.rewards.learned.loss import pairwise_metrics
from hybrid_rl.rewards.learned.model import META_FILE, RewardModel, backbone_location
from hybrid_rl.rewards.learned.pairs import load_pairs, split_pairs, write_pairs
from hybrid_rl.rewards.learned.rubric import rubric_pairs
from hybrid_rl.rewards.learned.signal import PREFERENCE, PreferenceSignal
from hybrid_rl.rewards.scorer import RewardScorer
from hybrid_rl.rollout import build_backend
from hybrid_rl.runtime import distributed

log = logging.getLogger("hybrid_rl")


def preference_tasks(cfg: RecipeConfig) -> dict:
    """The run's tasks that have a `preference` signal (they share one reward model)."""
    return {name: task for name, task in cfg.tasks().items()
            if any(sig.verifier == PREFERENCE for sig in task.signals().values())}


def uses_reward_model(cfg: RecipeConfig) -> bool:
    return bool(preference_tasks(cfg))


def task_key(cfg: RecipeConfig) -> tuple:
    """What the default reward model depends on of the tasks (one task: as before mixtures)."""
    if not cfg.mixed:
        return cfg.task.name, asdict(cfg.task.data), cfg.task.response_style
    return ({name: (asdict(t.data), t.response_style)
             for name, t in preference_tasks(cfg).items()},)


def prepare_reward_model(cfg: RecipeConfig, location: str, tokenizer, train: list[Sample],
                         scorer: RewardScorer) -> Optional[str]:
    """Give the scorer's `preference` signals their reward model when the task uses one:
    reward_model.path, or the default one, trained on rubric-labelled samples of the starting
    policy the first time and then reused from the cache. Returns its folder (None when the
    task has no such signal)."""
    if not uses_reward_model(cfg):
        return None
    folder = cfg.reward_model.path
    if folder is None:
        rm = cfg.reward_model
        key = settings_key(
            location, *task_key(cfg),
            {k: v for k, v in asdict(rm).items()  # unused settings keep older keys valid
             if k != "path" and (k != "lora" or rm.lora.enabled)
             and (k != "ensemble_size" or v > 1)}, asdict(cfg.rollout), cfg.seed,
        )
        folder = str(Path(cfg.cache_dir).expanduser() / "reward_model" / key)
        if (Path(folder) / META_FILE).is_file():
            log.info(
                "[reward model] reusing the cached default reward model %s (same settings)", folder
            )
        else:
            log.info("[reward model] training the default reward model -> %s", folder)
            train_reward_model(cfg, location, tokenizer, train, Path(folder))
    for signal in scorer.signals():
        if isinstance(signal.verifier, PreferenceSignal):
            signal.verifier.use(folder)
            if signal.verifier.uncertainty_penalty and not is_ensemble(folder):
                raise ConfigError(f"rewards.{signal.name}.uncertainty_penalty="
                                  f"{signal.verifier.uncertainty_penalty} needs a reward-model "
                                  f"ensemble; {folder} holds one model (set "
                                  "reward_model.ensemble_size=K, K >= 2)")
    return folder


def policy_samples(cfg: RecipeConfig, location: str, tokenizer, prompts: list[str],
                   n: int, max_new_tokens: Optional[int] = None) -> list[list[str]]:
    """n sampled completions of the starting policy per prompt (rollout settings; a task's
    own completion limit when given)."""
    policy = load_policy(location, dtype=cfg.model.dtype)
    # transformers' sampling even under rollout=vllm: a second vLLM engine for this one-off
    # would keep its share of GPU memory for the whole run.
    r = cfg.rollout
    rollout = build_backend("hf", policy.to(distributed.device()), tokenizer,
                            max_new_tokens=max_new_tokens or r.max_new_tokens,
                            temperature=r.temperature, top_p=r.top_p, top_k=r.top_k,
                            max_batch_sequences=r.max_batch_sequences)
    per_call = max(1, cfg.rollout.max_batch_sequences // n)
    texts = []
    for i in range(0, len(prompts), per_call):
        texts += rollout.generate(prompts[i : i + per_call], n).texts
    return [texts[j * n : (j + 1) * n] for j in range(len(prompts))]


def preference_pairs(cfg: RecipeConfig, location: Optional[str], tokenizer, train: list[Sample],
                     data: Optional[PreferenceDataConfig] = None,
                     eval_fraction: Optional[float] = None):
    """(training pairs, validation pairs): read from `data` (default reward_model.data), or
    generated from the starting policy's own samples and labelled by the rubric
    (hybrid_rl/rewards/learned/rubric.py); `eval_fraction` (default
    reward_model.eval_fraction) is split off when no validation file or split is given."""
    d = data or cfg.reward_model.data
    held = None
    if d.source == "generator":
        tasks = preference_tasks(cfg) or cfg.tasks()  # train_rm.py: the task it was given
        pool = [s for s in train if s.task in tasks]
        chosen = random.Random(d.seed).sample(pool, min(d.num_prompts, len(pool)))
        pairs = []
        for name, task in tasks.items():  # each task's answers, at its length, in its style
            prompts = [s.prompt for s in chosen if s.task == name]
            samples = policy_samples(cfg, location, tokenizer, prompts, d.samples_per_prompt,
                                     task.max_new_tokens)
            pairs += rubric_pairs(prompts, samples, style=task.response_style,
                                  pairs_per_prompt=d.pairs_per_prompt,
                                  label_noise=d.label_noise, seed=d.seed)
    else:
        skipped: list[str] = []
        pairs, held = load_pairs(d, skipped)
        if skipped:
            log.warning("skipped %d bad preference rows "
                        "(data.on_bad_row=skip); first: %s", len(skipped), skipped[0])
    if held is None:
        share = cfg.reward_model.eval_fraction if eval_fraction is None else eval_fraction
        pairs, held = split_pairs(pairs, share, d.seed)
    if not pairs or not held:
        raise DataError(f"preference data: {len(pairs)} training and "
                        f"{len(held)} validation pairs; need both")
    return pairs, held


def train_reward_model(cfg: RecipeConfig, location: Optional[str], tokenizer, train: list[Sample],
                       out: Path) -> dict:
    """Pairs -> Bradley-Terry training -> a reward-model folder at `out` (with its pairs and
    validation metrics in hybrid_rl_reward_model.json); with reward_model.ensemble_size=K,
    K members in member_<k>/ and the ensemble's metrics. Returns that metadata."""
    rm_cfg = cfg.reward_model
    pairs, held = preference_pairs(cfg, location, tokenizer, train)
    log.info("[reward model] %d training and %d validation pairs", len(pairs), len(held))
    members = [fit_member(cfg, location, pairs, held, cfg.seed + k)
               for k in range(rm_cfg.ensemble_size)]
    meta = {
        "backbone": rm_cfg.backbone,
        "lora": asdict(rm_cfg.lora) if rm_cfg.lora.enabled else None,
        "train_pairs": len(pairs),
        "validation_pairs": len(held),
        "data": asdict(rm_cfg.data),
    }
    if len(members) == 1:
        rm, member_meta = members[0]
        meta.update(member_meta)
    else:
        meta.update(ensemble_metadata(members, held, rm_cfg.score_batch_size))

    def write(tmp: Path) -> None:
        if len(members) == 1:
            members[0][0].save(tmp, meta)
        else:
            for k, (member, member_meta) in enumerate(members):
                member.save(tmp / member_folder(k), member_meta)
            (tmp / META_FILE).write_text(json.dumps(meta, indent=2))
        write_pairs(pairs, tmp / "train_pairs.jsonl")
        write_pairs(held, tmp / "validation_pairs.jsonl")

    publish_folder(out, write)
    return meta


def fit_member(cfg: RecipeConfig, location: Optional[str], pairs, held,
               seed: int) -> tuple[RewardModel, dict]:
    """One reward model from `seed` (its head, its adapters and its data order): the model
    and its metadata (fit, validation metrics before and after)."""
    rm_cfg = cfg.reward_model
    rm = RewardModel.from_backbone(
        backbone_location(rm_cfg.backbone, location), rm_cfg.max_length, seed,
        adapters=rm_cfg.lora if rm_cfg.lora.enabled else None,
    )
    before = evaluate_pairs(rm, held, rm_cfg.score_batch_size)
    settings = FitSettings(rm_cfg.batch_size, rm_cfg.learning_rate, rm_cfg.max_steps,
                           rm_cfg.max_time_s, rm_cfg.margin, rm_cfg.center_coef, seed=seed)
    fit = fit_reward_model(rm, pairs, settings, log.info)
    after = evaluate_pairs(rm, held, rm_cfg.score_batch_size)
    log.info(
        "[reward model] seed %d validation: accuracy %.3f (clean labels %.3f), mean margin "
        "%.3f, ECE %.3f after %d steps, %.0fs", seed, after["accuracy"],
        after.get("accuracy_clean", math.nan), after["mean_margin"], after["ece"],
        fit["steps"], fit["seconds"],
    )
    return rm, {"seed": seed, "fit": fit, "validation": after, "validation_at_start": before}


def ensemble_metadata(members: list, held, batch_size: int) -> dict:
    """The members' entries (standardisation on the validation responses), the ensemble's
    validation metrics and its mean disagreement on the validation responses, the baseline
    the hacking watch compares the policy's samples with."""
    prompts = [p.prompt for p in held] * 2
    responses = [p.chosen for p in held] + [p.rejected for p in held]
    raw = [torch.tensor(rm.score(prompts, responses, batch_size), dtype=torch.float64)
           for rm, _ in members]  # each member scored once: its statistics, then its scores
    entries = [{"folder": member_folder(k), "seed": m["seed"], **standardisation(r)}
               for k, (r, (_, m)) in enumerate(zip(raw, members))]
    scores = torch.stack([standardised(r, e) for r, e in zip(raw, entries)])  # [K, 2P]
    mean, spread = scores.mean(0), scores.std(0)
    n = len(held)
    validation = pairwise_metrics(mean[:n].float(), mean[n:].float(),
                                  torch.tensor([p.flipped for p in held]))
    log.info("[reward model] ensemble of %d: validation accuracy %.3f (members %s), mean "
             "disagreement %.3f", len(members), validation["accuracy"],
             [round(m["validation"]["accuracy"], 3) for _, m in members], spread.mean().item())
    return {"members": entries, "validation": validation,
            "validation_disagreement": spread.mean().item(),
            "member_validation": [m["validation"] for _, m in members]}


def main(dcfg: DictConfig) -> float:
    cfg, run_dir = build.start_run(dcfg)
    location = tokenizer = None
    train: list = []
    if cfg.reward_model.data.source == "generator" or cfg.reward_model.backbone == "policy":
        train, held = build.task_samples(cfg)
        location, tokenizer, train, _ = build.prepare_start(cfg, train, held)
    out = run_dir / "reward_model"
    meta = train_reward_model(cfg, location, tokenizer, train, out)
    (run_dir / "metrics.json").write_text(json.dumps(meta, indent=2))
    log.info(
        "reward model saved in %s; train with it: python train.py task=%s reward_model.path=%s",
        out, cfg.task.name, out.resolve(),
    )
    return meta["validation"]["accuracy"]
