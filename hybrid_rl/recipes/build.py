"""From the config tree to components. Called by the entry scripts only; everything it builds
takes plain arguments."""
from __future__ import annotations

import logging
import random
from dataclasses import asdict, replace
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from transformers import AutoConfig

from hybrid_rl import plugins
from hybrid_rl.algo.optim import make_optimizer
from hybrid_rl.config.schema import Config, ConfigError, RecipeConfig
from hybrid_rl.data.loaders import load_task_samples
from hybrid_rl.data.mixture import MixedPromptStream
from hybrid_rl.data.samples import DataError, PromptStream, Sample, drop_overlong
from hybrid_rl.models import fast_llama, lora
from hybrid_rl.models.loading import (
    builtin_model_folder,
    format_prompt,
    frozen_copy,
    gguf_model_folder,
    load_policy,
    load_tokenizer,
    resolve_model_location,
)
from hybrid_rl.models.warm_start import warm_start
from hybrid_rl.plugins import VERIFIERS, PluginError
from hybrid_rl.rewards.composition import RewardComposer, SignalRule
from hybrid_rl.rewards.scorer import RewardScorer, Signal
from hybrid_rl.rollout import build_backend
from hybrid_rl.runtime import distributed
from hybrid_rl.runtime.engine import DeepSpeedSettings, reference_under_zero3
from hybrid_rl.runtime.metrics import MetricsWriter
from hybrid_rl.runtime.trackers import open_trackers

log = logging.getLogger("hybrid_rl")


def to_config(dcfg: DictConfig) -> Config:
    """Typed, validated config (raises ConfigError naming every bad field)."""
    return OmegaConf.to_object(dcfg)


def start_processes(dcfg: DictConfig) -> None:
    """train.py under torchrun or DeepSpeed: join the process group before anything else, and
    let only rank 0 speak at INFO level (the others still warn)."""
    distributed.adopt_slurm_environment()
    if dcfg.deepspeed.stage is None and not distributed.launched_multi_process():
        return
    if dcfg.deepspeed.stage is None:
        raise ConfigError("deepspeed.stage: several processes need "
                          "DeepSpeed: add deepspeed=ddp, deepspeed=zero2 "
                          "or deepspeed=zero3 (README 'Scaling up')")
    distributed.init_process_group()
    if not distributed.is_main():
        log.setLevel(logging.WARNING)
    world, t = distributed.world_size(), dcfg.trainer
    if t.prompts_per_step % world:
        raise ConfigError(f"trainer.prompts_per_step: {t.prompts_per_step} prompts do not split "
                          f"evenly over {world} processes")
    if world > 1 and t.dynamic_sampling != "off":
        # Ranks would keep different numbers of groups, and ZeRO's collectives need equal work.
        raise ConfigError(
            "trainer.dynamic_sampling: only 'off' is supported with several processes"
        )


def start_run(dcfg: DictConfig) -> tuple[Config, Path]:
    """An entry script's first step: the validated config (a bad value stops here, naming the
    field), the run folder with the resolved config written into it, and seeded RNGs."""
    from hydra.core.hydra_config import HydraConfig

    cfg = to_config(dcfg)
    # Under torchrun each process names its own folder from the clock: rank 0's is the run's.
    run_dir = Path(distributed.broadcast_object(HydraConfig.get().runtime.output_dir))
    if distributed.is_main():
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(dcfg, resolve=True))
    seed_everything(cfg.seed, cfg.num_threads)
    return cfg, run_dir


def seed_everything(seed: int, num_threads: Optional[int]) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    # A CPU setting: on a GPU machine the CPU's work (offloaded Adam, data, verifiers) wants
    # every core, so torch's default stays.
    if num_threads and not torch.cuda.is_available():
        torch.set_num_threads(num_threads)


def task_samples(cfg: RecipeConfig) -> tuple[list[Sample], list[Sample]]:
    """(train, held-out) of every task of the run, in task order (each sample names its task)."""
    train, held = [], []
    for name, task in cfg.tasks().items():
        t, h, skipped = load_task_samples(task.data, name)
        if skipped:
            log.warning("task %s: skipped %d bad rows (task.data.on_bad_row=skip); first: %s",
                        name, len(skipped), skipped[0])
        log.info("task %s: %d training and %d held-out problems", name, len(t), len(h))
        train, held = train + t, held + h
    return train, held


def by_task(items, key=lambda sample: sample.task) -> dict[str, list]:
    """Items grouped by their task, each group in its original order."""
    out: dict[str, list] = {}
    for item in items:
        out.setdefault(key(item), []).append(item)
    return out


def prompt_stream(cfg: RecipeConfig, train: list[Sample]):
    """The resumable stream of training prompts: one task's, or the mixture's by share."""
    shard, shards = distributed.rank(), distributed.world_size()
    if not cfg.mixed:
        return PromptStream(train, cfg.seed, shard, shards)
    shares = {name: task.share for name, task in cfg.tasks().items()}
    return MixedPromptStream(by_task(train), shares, cfg.seed, shard, shards)


def warm_up_key(cfg: RecipeConfig) -> dict:
    """What names the cached warm-up model: the tasks' data (one task: as before mixtures)."""
    if not cfg.mixed:
        return {"task": cfg.task.name, "data": asdict(cfg.task.data),
                "chat": cfg.model.chat_template}
    return {"tasks": {name: asdict(t.data) for name, t in cfg.tasks().items()},
            "chat": cfg.model.chat_template}


def base_location(cfg: RecipeConfig) -> str:
    """Folder (or hub id) of the model before any warm-up."""
    m = cfg.model
    if m.source == "builtin":
        return str(builtin_model_folder(asdict(m.tiny), cfg.cache_dir))
    location = resolve_model_location(m.source, m.path, m.package)
    if m.source == "gguf":  # from here on an ordinary Hugging Face folder
        return str(gguf_model_folder(location, m.gguf_file, cfg.cache_dir))
    return location


def prepare_start(cfg: RecipeConfig, train: list[Sample], held: list[Sample]):
    """(starting-model location, tokenizer, train, held) with prompts in the model's format;
    runs or reuses the SFT warm-up when model.warmup_sft is set."""
    location = base_location(cfg)
    tokenizer = load_tokenizer(location)
    if cfg.model.chat_template:
        fmt = lambda s: replace(s, prompt=format_prompt(tokenizer, s.prompt, True))  # noqa: E731
        train, held = [fmt(s) for s in train], [fmt(s) for s in held]
    train, held = fit_context(cfg, location, tokenizer, train, held)
    if cfg.model.warmup_sft:
        location = str(warm_start(
            location, train, cache_dir=cfg.cache_dir,
            key_parts=warm_up_key(cfg),
            steps=cfg.sft.steps, batch_size=cfg.sft.batch_size, learning_rate=cfg.sft.learning_rate,
            lr_schedule=cfg.sft.lr_schedule, weight_decay=cfg.sft.weight_decay, seed=cfg.seed,
            log_every=cfg.sft.log_every, log=log.info, adapters=cfg.model.lora
            if cfg.model.lora.enabled and cfg.model.lora.warmup else None,
        ))
    return location, tokenizer, train, held


def fit_context(
    cfg: RecipeConfig, location: str, tokenizer, train: list[Sample], held: list[Sample]
):
    """Check every prompt leaves room for rollout.max_new_tokens in the model's context."""
    model_config = AutoConfig.from_pretrained(location)
    context = getattr(model_config, "max_position_embeddings", None)
    if context is None:
        return train, held
    tasks = cfg.tasks()
    limits = {}  # task -> longest prompt that leaves room for its completions
    for name, task in tasks.items():
        new_tokens = completion_tokens(cfg, task)
        limits[name] = context - new_tokens
        if limits[name] <= 0:
            field = ("rollout" if task.max_new_tokens is None
                     else f"mix.tasks.{name}" if cfg.mixed else "task")
            raise ConfigError(f"{field}.max_new_tokens={new_tokens} does not fit the model's "
                              f"context of {context}")
    skipped: list[str] = []
    out = []
    for samples in (train, held):
        lengths = [len(ids) for ids in tokenizer([s.prompt for s in samples],
                                                 add_special_tokens=False)["input_ids"]]
        kept = []
        for name, rows in by_task(zip(samples, lengths), key=lambda pair: pair[0].task).items():
            kept += drop_overlong([s for s, _ in rows], [n for _, n in rows], limits[name],
                                  tasks[name].data.on_bad_row, skipped)
        out.append(kept)
    if skipped:
        log.warning("skipped %d overlong prompts (task.data.on_bad_row=skip); first: %s",
                    len(skipped), skipped[0])
    for name in tasks:
        if not any(s.task == name for s in out[0]) or not any(s.task == name for s in out[1]):
            raise DataError(f"task {name!r}: no prompt fits "
                            f"the model's context of {context} tokens")
    return out[0], out[1]


def completion_tokens(cfg: RecipeConfig, task) -> int:
    """A task's completion limit: its own max_new_tokens, else rollout.max_new_tokens."""
    return task.max_new_tokens or cfg.rollout.max_new_tokens


def load_models(cfg: Config, location: str, policy_location: Optional[str] = None,
                with_reference: Optional[bool] = None):
    """(policy, reference or None) on this process's device. The reference is always the
    starting model (loaded when `with_reference`, by default when the KL term needs it); the
    policy comes from `policy_location` when resuming. With model.lora the policy is the
    starting model with adapters (resumed ones from `policy_location`, a PEFT folder) and the
    reference is that same model with its adapters off: nothing is copied."""
    start = load_policy(location, dtype=cfg.model.dtype,
                        trust_remote_code=cfg.model.trust_remote_code)
    if with_reference is None:
        with_reference = cfg.trainer.beta > 0
    device = distributed.device()
    if cfg.model.lora.enabled:
        if cfg.model.gradient_checkpointing:  # the frozen embeddings' output needs a gradient
            start.gradient_checkpointing_enable()
            start.enable_input_require_grads()
        policy = (lora.add_adapters(start, cfg.model.lora) if policy_location is None
                  else lora.load_adapters(start, policy_location)).to(device)
        trained, total = lora.trainable_share(policy)
        log.info("model.lora: training %.2fM of %.2fM parameters (%.2f%%); the reference is the "
                 "base with the adapters off; %s", trained / 1e6, total / 1e6,
                 100 * trained / total, "the lean Llama path adds the adapters to its weights"
                 if fast_llama.supports(policy) else "transformers' forward runs (the lean "
                 "path does not reproduce these adapters or this model)")
        return policy, lora.AdaptersOff(policy) if with_reference else None
    reference = frozen_copy(start) if with_reference else None
    policy = start if policy_location is None else load_policy(policy_location,
                                                               dtype=cfg.model.dtype)
    if cfg.model.gradient_checkpointing:
        policy.gradient_checkpointing_enable()
    return policy.to(device), None if reference is None else reference.to(device)


def metrics_writer(cfg: Config, run_dir: Path, resume_step: Optional[int]) -> MetricsWriter:
    """metrics.jsonl, TensorBoard and the trackers of logging.trackers; the main process's
    only (the others' is disabled)."""
    main = distributed.is_main()
    trackers = open_trackers(cfg.logging, run_dir, asdict(cfg)) if main else []
    return MetricsWriter(run_dir, cfg.logging.tensorboard, resume_step=resume_step,
                         enabled=main, trackers=trackers)


def deepspeed_settings(cfg: Config) -> Optional[DeepSpeedSettings]:
    d = cfg.deepspeed
    return None if d.stage is None else DeepSpeedSettings(d.stage, d.offload_optimizer, d.bf16)


def make_policy_optimizer(cfg: Config, policy, learning_rate: Optional[float] = None,
                          weight_decay: Optional[float] = None) -> torch.optim.Optimizer:
    """torch AdamW, or DeepSpeed's CPU Adam when its states are offloaded (it steps them on the
    CPU; its first use compiles a C++ extension, a few minutes). The trainer's rate and decay
    unless given (PPO's critic has its own)."""
    t = cfg.trainer
    lr = t.learning_rate if learning_rate is None else learning_rate
    decay = t.weight_decay if weight_decay is None else weight_decay
    if cfg.deepspeed.stage is not None and cfg.deepspeed.offload_optimizer:
        from deepspeed.ops.adam import DeepSpeedCPUAdam

        params = [p for p in policy.parameters() if p.requires_grad]
        return DeepSpeedCPUAdam(params, lr=lr, betas=tuple(t.adam_betas), weight_decay=decay,
                                adamw_mode=True)
    return make_optimizer(policy, lr, decay, t.adam_betas, fused=True)


def shard_reference(cfg: Config, reference):
    """Under ZeRO-3 the frozen reference is sharded like the policy (each rank keeps 1/N)."""
    if reference is None or cfg.deepspeed.stage != 3 or not cfg.deepspeed.reference_zero3 or \
            isinstance(reference, lora.AdaptersOff):  # the policy itself: sharded already
        return reference
    return reference_under_zero3(reference)


def build_scorer(cfg, run_dir: Optional[Path]) -> RewardScorer:
    """The task's reward signals, verifiers found by name or `_target_` (train.py, sft.py and
    evaluate.py configs: they have `reward` and `sandbox`)."""
    # What a verifier class may ask for in its constructor (verifiers/registry.py construct):
    # the code verifier starts and checks its sandbox here, before any model is loaded.
    settings = {"sandbox": cfg.sandbox, "reward_model_path": cfg.reward_model.path,
                "judge": cfg.judge, "cache_dir": cfg.cache_dir,
                "score_batch_size": cfg.reward_model.score_batch_size}
    where = "mix.tasks.{task}.rewards.{signal}.verifier" if cfg.mixed else \
        "task.rewards.{signal}.verifier"
    signals_by_task = {
        task_name: [Signal(name, plugins.build(VERIFIERS, sig.verifier,
                                               where.format(task=task_name, signal=name),
                                               uncertainty_penalty=sig.uncertainty_penalty,
                                               **settings), sig.weight)
                    for name, sig in task.signals().items()]
        for task_name, task in cfg.tasks().items()
    }
    failures = Path(run_dir) / cfg.reward.failures_file if run_dir is not None else None
    return RewardScorer(signals_by_task, failures, cfg.reward.max_error_rate,
                        num_workers=cfg.reward.num_workers, timeout_s=cfg.reward.timeout_s,
                        error_window=cfg.reward.error_window, rules=signal_rules(cfg),
                        gate_failures_scored=cfg.reward.gate_failures_scored)


def report_isolation(scorer: RewardScorer, metrics=None, step: int = 0) -> None:
    """Say in the run log, and in the metrics as sandbox/unsafe=1, at every start (resumes
    too), that model-written code runs without isolation."""
    unsafe = scorer.unisolated_signals()
    if not unsafe:
        return
    log.warning("signal(s) %s run model-written code WITHOUT isolation "
                "(sandbox.backend=unsafe_local): use it only for code you trust", unsafe)
    if metrics is not None:
        metrics.log(step, {"sandbox/unsafe": 1.0})


def build_composer(cfg: Config) -> RewardComposer:
    """How the task's signals combine into one reward per sample (gates, normalisation,
    weights); training only."""
    return RewardComposer(signal_rules(cfg), eps=cfg.trainer.advantage_eps)


def signal_rules(cfg) -> dict[str, dict[str, SignalRule]]:
    """task -> signal -> its weight, normalisation and gate: what the composer applies, and what
    tells the scorer which scores the reward can use."""
    return {task_name: {name: SignalRule(sig.weight, sig.normalize, sig.gate, sig.gate_min)
                        for name, sig in task.signals().items()}
            for task_name, task in cfg.tasks().items()}


def vllm_context(policy, tokenizer, prompts: Sequence[str], max_new_tokens: int) -> int:
    """Tokens vLLM must fit per sequence: the longest prompt plus the completion limit, never
    more than the model's context (32k-131k for real models, which the KV cache would
    otherwise have to hold)."""
    context = getattr(policy.config, "max_position_embeddings", None) or 2048
    if not prompts:
        return context
    longest = max(len(ids) for ids in tokenizer(list(prompts), add_special_tokens=False)[
        "input_ids"])
    return min(context, longest + max_new_tokens)


def rollout_settings(cfg: RecipeConfig, policy, tokenizer, prompts: Sequence[str] = (),
                     backend: Optional[str] = None) -> dict:
    """The keyword arguments of rollout backend `backend` (default rollout.backend)."""
    r = cfg.rollout
    settings = dict(max_new_tokens=r.max_new_tokens, temperature=r.temperature, top_p=r.top_p,
                    top_k=r.top_k, max_batch_sequences=r.max_batch_sequences)
    if (backend or r.backend) == "vllm":
        settings.update(gpu_memory_utilization=r.gpu_memory_utilization,
                        kv_cache_gib=r.kv_cache_gib,
                        enforce_eager=r.enforce_eager, verify_sync=r.verify_sync,
                        sync_tolerance=r.sync_tolerance, seed=cfg.seed + distributed.rank(),
                        dtype=cfg.model.dtype,
                        max_model_len=vllm_context(policy, tokenizer, prompts, max(
                            completion_tokens(cfg, t) for t in cfg.tasks().values())))
    return settings


def build_rollout(cfg: RecipeConfig, policy, tokenizer, gather=None, prompts: Sequence[str] = ()):
    """The rollout backend. `gather` (ZeRO-3) makes the full weights present while the hf
    backend samples from the training module and while vLLM takes its first weights; vLLM
    sizes its context (and so its KV cache) to the longest of `prompts` plus
    rollout.max_new_tokens rather than the model's whole context. With asynchronous rollouts
    the worker runs rollout.backend, and the trainer's own backend (held-out evaluation) is hf:
    one engine of each kind, not two vLLM engines."""
    backend = "hf" if cfg.rollout.async_steps else cfg.rollout.backend
    settings = rollout_settings(cfg, policy, tokenizer, prompts, backend)
    if gather is not None and cfg.deepspeed.stage == 3:
        settings["gather"] = gather
    try:
        return build_backend(backend, policy, tokenizer, **settings)
    except PluginError as exc:  # raised by the look-up, before any backend starts
        raise ConfigError(f"rollout.backend: {exc}") from exc
