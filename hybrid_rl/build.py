"""From the config tree to components. Called by the entry scripts only; everything it builds
takes plain arguments."""
from __future__ import annotations

import logging
import random
from dataclasses import asdict, replace
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from transformers import AutoConfig

from hybrid_rl.config import Config, ConfigError
from hybrid_rl.data import DataError, Sample, drop_overlong, load_task_samples
from hybrid_rl.models import (
    builtin_model_folder, format_prompt, frozen_copy, load_policy, load_tokenizer, resolve_model_location,
)
from hybrid_rl.rewards import RewardScorer, Signal
from hybrid_rl.rollout import build_backend
from hybrid_rl.sft import warm_start
from verifiers import available_verifiers, get_verifier

log = logging.getLogger("hybrid_rl")


def to_config(dcfg: DictConfig) -> Config:
    """Typed, validated config (raises ConfigError naming every bad field)."""
    return OmegaConf.to_object(dcfg)


def seed_everything(seed: int, num_threads: Optional[int]) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if num_threads:
        torch.set_num_threads(num_threads)


def task_samples(cfg: Config) -> tuple[list[Sample], list[Sample]]:
    train, held, skipped = load_task_samples(cfg.task.data, cfg.task.name)
    if skipped:
        log.warning("skipped %d bad rows (task.data.on_bad_row=skip); first: %s", len(skipped), skipped[0])
    log.info("task %s: %d training and %d held-out problems", cfg.task.name, len(train), len(held))
    return train, held


def base_location(cfg: Config) -> str:
    """Folder (or hub id) of the model before any warm-up."""
    m = cfg.model
    if m.source == "builtin":
        return str(builtin_model_folder(asdict(m.tiny), cfg.cache_dir))
    return resolve_model_location(m.source, m.path, m.package)


def prepare_start(cfg: Config, train: list[Sample], held: list[Sample]):
    """(starting-model location, tokenizer, train, held) with prompts in the model's format;
    runs or reuses the SFT warm-up when model.warmup_sft is set."""
    location = base_location(cfg)
    tokenizer = load_tokenizer(location, cfg.model.gguf_file)
    if cfg.model.chat_template:
        fmt = lambda s: replace(s, prompt=format_prompt(tokenizer, s.prompt, True))  # noqa: E731
        train, held = [fmt(s) for s in train], [fmt(s) for s in held]
    train, held = fit_context(cfg, location, tokenizer, train, held)
    if cfg.model.warmup_sft:
        location = str(warm_start(
            location, train, cache_dir=cfg.cache_dir,
            key_parts={"task": cfg.task.name, "data": asdict(cfg.task.data), "chat": cfg.model.chat_template},
            steps=cfg.sft.steps, batch_size=cfg.sft.batch_size, learning_rate=cfg.sft.learning_rate,
            lr_schedule=cfg.sft.lr_schedule, weight_decay=cfg.sft.weight_decay, seed=cfg.seed,
            log_every=cfg.sft.log_every, log=log.info,
        ))
    return location, tokenizer, train, held


def fit_context(cfg: Config, location: str, tokenizer, train: list[Sample], held: list[Sample]):
    """Check every prompt leaves room for rollout.max_new_tokens in the model's context."""
    model_config = AutoConfig.from_pretrained(location, gguf_file=cfg.model.gguf_file)
    context = getattr(model_config, "max_position_embeddings", None)
    if context is None:
        return train, held
    limit = context - cfg.rollout.max_new_tokens
    if limit <= 0:
        raise ConfigError(f"rollout.max_new_tokens={cfg.rollout.max_new_tokens} does not fit the model's context of {context}")
    skipped: list[str] = []
    out = []
    for samples in (train, held):
        lengths = [len(ids) for ids in tokenizer([s.prompt for s in samples], add_special_tokens=False)["input_ids"]]
        out.append(drop_overlong(samples, lengths, limit, cfg.task.data.on_bad_row, skipped))
    if skipped:
        log.warning("skipped %d overlong prompts (task.data.on_bad_row=skip); first: %s", len(skipped), skipped[0])
    if not out[0] or not out[1]:
        raise DataError(f"task {cfg.task.name!r}: no prompt fits the model's context of {context} tokens")
    return out[0], out[1]


def load_models(cfg: Config, location: str, policy_location: Optional[str] = None):
    """(policy, reference or None). The reference is always the starting model; the policy
    comes from `policy_location` when resuming."""
    gguf = cfg.model.gguf_file if cfg.model.source == "gguf" else None
    start = load_policy(location, dtype=cfg.model.dtype, gguf_file=gguf, trust_remote_code=cfg.model.trust_remote_code)
    reference = frozen_copy(start) if cfg.trainer.beta > 0 else None
    policy = start if policy_location is None else load_policy(policy_location, dtype=cfg.model.dtype)
    if cfg.model.gradient_checkpointing:
        policy.gradient_checkpointing_enable()
    return policy, reference


def build_scorer(cfg: Config, run_dir: Optional[Path]) -> tuple[RewardScorer, dict[str, dict[str, float]]]:
    """The task's reward signals (verifiers found by name) and their weights."""
    signals = []
    for name, sig in cfg.task.signals().items():
        if sig.verifier not in available_verifiers():
            raise ConfigError(
                f"task.rewards.{name}.verifier: unknown verifier {sig.verifier!r}; registered: {available_verifiers()}"
            )
        verifier = get_verifier(sig.verifier)
        if hasattr(verifier, "configure"):  # e.g. the code verifier starts and checks its sandbox
            verifier.configure(cfg)
        signals.append(Signal(name, verifier, sig.weight))
    failures = Path(run_dir) / cfg.reward.failures_file if run_dir is not None else None
    scorer = RewardScorer({cfg.task.name: signals}, failures, cfg.reward.max_error_rate,
                          num_workers=cfg.reward.num_workers, timeout_s=cfg.reward.timeout_s)
    return scorer, {cfg.task.name: {s.name: s.weight for s in signals}}


def build_rollout(cfg: Config, policy, tokenizer):
    r = cfg.rollout
    return build_backend(
        r.backend, policy, tokenizer, max_new_tokens=r.max_new_tokens, temperature=r.temperature,
        top_p=r.top_p, top_k=r.top_k, max_batch_sequences=r.max_batch_sequences,
    )
