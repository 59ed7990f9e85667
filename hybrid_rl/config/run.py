"""The run around the algorithm: SFT warm-up, evaluation, logging, checkpoints, DeepSpeed,
and evaluate.py's models."""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from typing import Iterator, List, Optional

from hybrid_rl.config.checks import choice, positive

TRACKERS = ("wandb", "mlflow")  # logging.trackers (hybrid_rl/runtime/trackers.py)


@dataclass
class SFTConfig:
    """Supervised warm-up on task demonstrations (loss on answer tokens only)."""

    steps: int = 800  # optimizer steps
    batch_size: int = 128  # demonstrations per step
    learning_rate: float = 1e-3  # AdamW peak learning rate (5% linear warm-up)
    lr_schedule: str = "constant"  # constant | cosine | linear (decay to 0 at the last step)
    weight_decay: float = 0.0  # AdamW decoupled weight decay
    log_every: int = 50  # print the loss every this many steps

    def problems(self) -> Iterator[str]:
        yield from positive("steps", self.steps)
        yield from choice("lr_schedule", self.lr_schedule, {"constant", "cosine", "linear"})
        yield from positive("batch_size", self.batch_size)
        yield from positive("learning_rate", self.learning_rate)
        yield from positive("log_every", self.log_every)


@dataclass
class EvalConfig:
    """Held-out evaluation (greedy decoding, accuracy by the task's accuracy signal)."""

    every_steps: int = 25  # evaluate every this many steps (0 = only at start and end)
    at_start: bool = True  # evaluate the starting policy before any update
    batch_size: int = 256  # prompts per generate() call
    # n > 0: also sample n completions per problem and log unbiased pass@k
    samples_per_prompt: int = 0
    # the k of eval/pass@k (each <= samples_per_prompt)
    pass_k: List[int] = field(default_factory=lambda: [1])

    def problems(self) -> Iterator[str]:
        yield from positive("every_steps", self.every_steps, allow_zero=True)
        yield from positive("batch_size", self.batch_size)
        yield from positive("samples_per_prompt", self.samples_per_prompt, allow_zero=True)
        n = self.samples_per_prompt
        if n and not all(1 <= k <= n for k in self.pass_k):
            yield ("pass_k: every k must be in [1, "
                   f"samples_per_prompt={self.samples_per_prompt}], got {list(self.pass_k)}")


@dataclass
class LoggingConfig:
    """Metrics, samples and plots written to the run folder."""

    every_steps: int = 1  # write metrics every this many steps
    samples_every_steps: int = 25  # write example completions every this many steps (0 = never)
    num_samples: int = 4  # example completions written each time
    tensorboard: bool = True  # also write TensorBoard event files (run folder/tensorboard)
    progress_bar: bool = True  # live progress bar on the console
    # experiment trackers that also get every metric: wandb, mlflow (optional extras)
    trackers: List[str] = field(default_factory=list)
    project: str = "hybrid-rl"  # W&B project, MLflow experiment of runs outside a sweep
    wandb_mode: Optional[str] = None  # online | offline | disabled; None: WANDB_MODE or online
    mlflow_uri: Optional[str] = None  # None: MLFLOW_TRACKING_URI, else ./mlruns (a file store)

    def problems(self) -> Iterator[str]:
        yield from positive("every_steps", self.every_steps)
        yield from positive("samples_every_steps", self.samples_every_steps, allow_zero=True)
        yield from positive("num_samples", self.num_samples, allow_zero=True)
        for name in self.trackers:
            yield from choice("trackers", name, set(TRACKERS))
            if name in TRACKERS and importlib.util.find_spec(name) is None:
                yield (f"trackers: {name} is not installed: pip install -e '.[{name}]' "
                       f"(or pip install {name})")
        if self.wandb_mode is not None:
            yield from choice("wandb_mode", self.wandb_mode, {"online", "offline", "disabled"})


@dataclass
class DeepSpeedConfig:
    """Sharded training (README "Scaling up"); stage None trains in one plain process."""

    # None | 0 (data parallel) | 2 (shard optimizer + gradients) | 3 (+ parameters)
    stage: Optional[int] = None
    offload_optimizer: bool = False  # optimizer states in CPU memory, stepped by DeepSpeedCPUAdam
    bf16: bool = False  # bf16 mixed precision (GPUs); the optimizer keeps fp32 master weights
    reference_zero3: bool = True  # stage 3: shard the frozen reference model too (ZeRO-3 inference)

    def problems(self) -> Iterator[str]:
        if self.stage is not None:
            yield from choice("stage", self.stage, {0, 1, 2, 3})
        if self.stage is None and (self.offload_optimizer or self.bf16):
            yield ("stage: offload_optimizer and bf16 are "
                   "DeepSpeed options; pick deepspeed=zero2 or zero3")


@dataclass
class CheckpointConfig:
    """When to save and where to resume from."""

    every_steps: int = 100  # save every this many steps (0 = only at the end)
    keep_last: int = 2  # how many step checkpoints to keep
    # also keep checkpoints/best: the policy of the best held-out evaluation (never deleted)
    keep_best: bool = True
    save_final: bool = True  # save after the last step
    # None | auto (latest in this run folder) | a run folder or checkpoint path
    resume: Optional[str] = None

    def problems(self) -> Iterator[str]:
        yield from positive("every_steps", self.every_steps, allow_zero=True)
        yield from positive("keep_last", self.keep_last)


@dataclass
class EvaluateConfig:
    """`python evaluate.py`: which models to evaluate (train.py and sft.py ignore this section)."""

    # HF model folder, checkpoint folder or run folder (latest checkpoint); None: the starting model
    checkpoint: Optional[str] = None
    # a second model, evaluated the same way and reported side by side
    compare: Optional[str] = None
    # win-rate opponent: start (the config's starting model), a model path, or null (none)
    reference: Optional[str] = "start"
    # signal deciding wins; None: `preference` if the task has it, else task.accuracy_signal
    judge_signal: Optional[str] = None

    def problems(self) -> Iterator[str]:
        return iter(())
