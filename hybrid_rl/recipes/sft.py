"""Supervised fine-tuning on a task's demonstrations: `python sft.py task=math`.

The same warm-up train.py runs before GRPO for the built-in model (model.warmup_sft=true), as
its own command: it fills the cache train.py reuses, and also exports the result.
"""
from __future__ import annotations

import logging
import shutil

from omegaconf import DictConfig, OmegaConf

from hybrid_rl.evaluation.heldout import heldout_accuracy
from hybrid_rl.recipes import build
from hybrid_rl.recipes.reward_model import prepare_reward_model
from hybrid_rl.rollout import completion_limit

log = logging.getLogger("hybrid_rl")


def main(dcfg: DictConfig) -> float:
    OmegaConf.set_struct(dcfg, False)
    dcfg.model.warmup_sft = True  # this command always trains: that is what it is for
    cfg, run_dir = build.start_run(dcfg)
    train, held = build.task_samples(cfg)
    location, tokenizer, train, held = build.prepare_start(cfg, train, held)
    policy, _ = build.load_models(cfg, location)
    scorer = build.build_scorer(cfg, run_dir)
    prepare_reward_model(cfg, location, tokenizer, train, scorer)
    rollout = build.build_rollout(cfg, policy, tokenizer, prompts=[s.prompt for s in held])
    held_by_task = build.by_task(held)
    results = {}
    for name, task in cfg.tasks().items():
        with completion_limit(rollout, task.max_new_tokens):
            results[name] = heldout_accuracy(rollout, held_by_task[name], scorer,
                                             task.accuracy_signal)
    scorer.close()
    out = run_dir / "model"
    shutil.copytree(location, out, dirs_exist_ok=True)
    for name, res in results.items():
        log.info("SFT model: %s (copy in %s); %sheld-out accuracy %.3f on %d problems",
                 location, out, f"task {name}: " if cfg.mixed else "", res.accuracy,
                 res.num_scored)
    scored = sum(r.num_scored for r in results.values())
    return sum(r.accuracy * r.num_scored for r in results.values() if r.num_scored) / max(scored, 1)
