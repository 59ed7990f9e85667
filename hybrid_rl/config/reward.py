"""`reward` (how verifiers run, the hacking watch) and `reward_model` (the learned signal)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, Optional

from hybrid_rl.config.checks import choice, positive
from hybrid_rl.config.model import LoraConfig


@dataclass
class HackingWatchConfig:
    """Reward-hacking watch: does the learned (proxy) reward still agree with the verifier?"""

    # the learned signal to watch (inactive when the task lacks it)
    proxy_signal: str = "preference"
    window: int = 3  # held-out evaluations compared (first vs last of the latest `window`)
    min_proxy_rise: float = 0.05  # warn when the held-out proxy score rose at least this much...
    min_accuracy_drop: float = 0.02  # ...while held-out verified accuracy fell at least this much
    # ...each change at least this many standard errors of its paired (per-problem) change
    z: float = 3.0
    stop: bool = False  # also end training (saving a checkpoint) when it triggers
    # With a reward-model ensemble: alarm when the members' mean disagreement on the policy's
    # samples, averaged over the latest `disagreement_steps` steps, passes this multiple of
    # their disagreement on the validation pairs (0: off)
    disagreement_ratio: float = 2.0
    disagreement_steps: int = 5

    def problems(self) -> Iterator[str]:
        if self.window < 2:
            yield f"window: needs at least 2 evaluations to compare, got {self.window}"
        yield from positive("min_proxy_rise", self.min_proxy_rise, allow_zero=True)
        yield from positive("min_accuracy_drop", self.min_accuracy_drop, allow_zero=True)
        yield from positive("z", self.z, allow_zero=True)
        yield from positive("disagreement_ratio", self.disagreement_ratio, allow_zero=True)
        yield from positive("disagreement_steps", self.disagreement_steps)


@dataclass
class RewardConfig:
    """How verifiers are run."""

    num_workers: int = 2  # verifier worker processes (0: run verifiers in the trainer, unbounded)
    timeout_s: float = 2.0  # a verifier call running longer is killed and scores None
    # stop when more than this share of a signal's scores failed or were flagged by the machine
    # (sandbox errors, math timeouts) over its latest `error_window` scoring calls
    max_error_rate: float = 0.5
    error_window: int = 4  # scoring calls (training steps, evaluations) the rate is taken over
    failures_file: str = "reward_failures.jsonl"  # offending samples are appended here (run folder)
    # A gated signal scored in the trainer (the reward model) scores, in training rollouts, only
    # what can change the reward: the completions that passed its gate (when it is z-scored per
    # group, only where they differ) and, in this share of the groups, every completion, the
    # failing ones too, for the hacking watch; 1 scores everything
    gate_failures_scored: float = 0.25
    # proxy vs verifier
    hacking_watch: HackingWatchConfig = field(default_factory=HackingWatchConfig)

    def problems(self) -> Iterator[str]:
        yield from positive("num_workers", self.num_workers, allow_zero=True)
        yield from positive("timeout_s", self.timeout_s)
        yield from positive("error_window", self.error_window)
        if not 0.0 <= self.max_error_rate <= 1.0:
            yield f"max_error_rate: must be in [0, 1], got {self.max_error_rate}"
        if not 0.0 <= self.gate_failures_scored <= 1.0:
            yield f"gate_failures_scored: must be in [0, 1], got {self.gate_failures_scored}"
        yield from (f"hacking_watch.{p}" for p in self.hacking_watch.problems())


@dataclass
class PreferenceDataConfig:
    """(prompt, chosen, rejected) pairs for the reward model
    (hybrid_rl/rewards/learned/pairs.py)."""

    # generator (rubric-labelled policy samples) | jsonl | json | parquet | hf
    source: str = "generator"
    path: Optional[str] = None  # files: train file; hf: dataset id or local dataset folder
    eval_path: Optional[str] = None  # files: validation file (else split off the train rows)
    name: Optional[str] = None  # hf: dataset configuration name
    split: str = "train"  # hf: training split
    eval_split: Optional[str] = None  # hf: validation split (None: split off the train split)
    on_bad_row: str = "error"  # error: stop naming file and row | skip: drop and count it
    # source=generator (hybrid_rl/rewards/learned/rubric.py): pairs from the task's own policy
    # samples
    num_prompts: int = 1500  # task prompts sampled from the starting policy
    samples_per_prompt: int = 2  # policy completions per prompt (the answers the styles dress up)
    pairs_per_prompt: int = 2  # labelled pairs kept per prompt
    label_noise: float = 0.1  # share of pairs whose label is flipped, as disagreeing raters would
    seed: int = 0  # generator seed (prompt choice, styles, noise)

    def problems(self) -> Iterator[str]:
        yield from choice("source", self.source, {"generator", "jsonl", "json", "parquet", "hf"})
        yield from choice("on_bad_row", self.on_bad_row, {"error", "skip"})
        if self.source != "generator" and not self.path:
            yield f"path: source={self.source} needs a file, folder or dataset id"
        for f in ("num_prompts", "samples_per_prompt", "pairs_per_prompt"):
            yield from positive(f, getattr(self, f))
        if not 0.0 <= self.label_noise < 0.5:
            yield f"label_noise: must be in [0, 0.5), got {self.label_noise}"


@dataclass
class RewardModelConfig:
    """The learned preference reward (`verifier: preference`) and how train_rm.py trains it."""

    # a trained reward model folder; None: train the default one (cached)
    path: Optional[str] = None
    # minilm (packaged all-MiniLM-L6-v2) | policy (starting policy + scalar head) | an HF folder
    backbone: str = "minilm"
    # tokens of prompt + response (longer ones are cut from the left of the prompt)
    max_length: int = 128
    batch_size: int = 16  # pairs per optimizer step
    learning_rate: float = 5.0e-5  # AdamW learning rate (linear decay to 0)
    max_steps: int = 300  # optimizer steps at most
    max_time_s: Optional[float] = 240.0  # stop training after this many seconds, if set
    # Bradley-Terry margin: -log sigmoid(r_c - r_r - margin) (plus a row's `margin` column)
    margin: float = 0.0
    # reward centring: + center_coef * mean((r_c + r_r)^2) keeps scores near 0
    center_coef: float = 0.0
    eval_fraction: float = 0.1  # share of pairs held out for validation (when no eval file/split)
    score_batch_size: int = 128  # responses per forward pass when scoring rollouts
    # K > 1: train K reward models (seeds seed..seed+K-1: head, adapters and data order differ)
    # and score with the ensemble (README "Ensembles and uncertainty"); K times the training
    # and scoring cost
    ensemble_size: int = 1
    data: PreferenceDataConfig = field(default_factory=PreferenceDataConfig)  # training pairs
    # LoRA adapters on the backbone (the score head trains whole); saved merged
    lora: LoraConfig = field(default_factory=LoraConfig)

    def problems(self) -> Iterator[str]:
        for f in ("max_length", "batch_size", "learning_rate", "max_steps", "max_time_s",
                  "score_batch_size", "ensemble_size"):
            yield from positive(f, getattr(self, f))
        yield from positive("center_coef", self.center_coef, allow_zero=True)
        if not 0.0 < self.eval_fraction < 1.0:
            yield f"eval_fraction: must be in (0, 1), got {self.eval_fraction}"
        yield from (f"data.{p}" for p in self.data.problems())
        if self.lora.enabled:
            yield from (f"lora.{p}" for p in self.lora.problems())
