"""Reward-model training: `python train_rm.py` (Bradley-Terry on preference pairs; see README
"Learned preference reward").

Reads top to bottom: config, the starting policy when the pairs are generated from its own
samples (or the backbone is the policy), training, a Hugging Face folder in the run folder.
"""
from __future__ import annotations

import json
import logging

import hydra
from omegaconf import DictConfig

from hybrid_rl import build
from hybrid_rl.config import register_configs

log = logging.getLogger("hybrid_rl")
register_configs()


@hydra.main(config_path="conf", config_name="train_rm", version_base="1.3")
def main(dcfg: DictConfig) -> float:
    cfg, run_dir = build.start_run(dcfg)
    location = tokenizer = None
    train: list = []
    if cfg.reward_model.data.source == "generator" or cfg.reward_model.backbone == "policy":
        train, held = build.task_samples(cfg)
        location, tokenizer, train, _ = build.prepare_start(cfg, train, held)
    out = run_dir / "reward_model"
    meta = build.train_reward_model(cfg, location, tokenizer, train, out)
    (run_dir / "metrics.json").write_text(json.dumps(meta, indent=2))
    log.info("reward model saved in %s; train with it: python train.py task=%s reward_model.path=%s",
             out, cfg.task.name, out.resolve())
    return meta["validation"]["accuracy"]


if __name__ == "__main__":
    main()
