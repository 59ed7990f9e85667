"""`model`: which policy to train and how to load it."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, Optional

from hybrid_rl.config.checks import choice, positive


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
        for f in ("hidden_size", "num_layers", "num_heads", "intermediate_size",
                  "max_position_embeddings"):
            yield from positive(f, getattr(self, f))
        if self.num_heads > 0 and self.hidden_size % self.num_heads:
            yield f"hidden_size: {self.hidden_size} is not divisible by num_heads={self.num_heads}"


@dataclass
class LoraConfig:
    """LoRA adapters (peft) on the policy: only the adapters train, and the frozen base with the
    adapters switched off is the KL reference (no second copy of the model)."""

    enabled: bool = False
    rank: int = 16  # r: the adapters' inner width
    alpha: float = 32.0  # the update is scaled by alpha / rank
    dropout: float = 0.0  # on the adapters' input (0 keeps sampling and training identical)
    # the Linear layers that get adapters (names inside each block); all-linear: every one
    target_modules: list[str] = field(default_factory=lambda: ["all-linear"])
    # the SFT stage (model.warmup_sft, sft.py) trains adapters too and writes them merged;
    # false: it trains every weight (the built-in model's random weights: conf/model/tiny.yaml)
    warmup: bool = True

    def problems(self) -> Iterator[str]:
        yield from positive("rank", self.rank)
        yield from positive("alpha", self.alpha)
        if not 0.0 <= self.dropout < 1.0:
            yield f"dropout: {self.dropout} is not in [0, 1)"
        if not self.target_modules:
            yield "target_modules: name at least one module (or all-linear)"


@dataclass
class ModelConfig:
    """Which policy to train and how to load it."""

    name: str = "tiny"  # label used in run folders and logs
    # builtin (created locally) | hf (folder or hub id) | gguf (a .gguf file)
    source: str = "builtin"
    path: Optional[str] = None  # hf: folder or hub id; gguf: folder holding gguf_file
    # load from the folder of this installed Python package instead of path
    package: Optional[str] = None
    gguf_file: Optional[str] = None  # gguf: file name inside path/package
    dtype: str = "float32"  # float32 | bfloat16 | float16 (weights and training)
    chat_template: bool = False  # wrap each prompt with the tokenizer's chat template
    # run (or reuse a cached) SFT warm-up on task demonstrations before GRPO
    warmup_sft: bool = False
    gradient_checkpointing: bool = False  # trade compute for activation memory
    trust_remote_code: bool = False  # allow model code from the folder (hf only)
    tiny: TinyModelConfig = field(default_factory=TinyModelConfig)  # built-in model shape
    lora: LoraConfig = field(default_factory=LoraConfig)  # train adapters instead of weights

    def problems(self) -> Iterator[str]:
        yield from choice("source", self.source, {"builtin", "hf", "gguf"})
        yield from choice("dtype", self.dtype, {"float32", "bfloat16", "float16"})
        if self.source in ("hf", "gguf") and not (self.path or self.package):
            yield f"path: source={self.source} needs model.path (or model.package)"
        if self.source == "gguf" and not self.gguf_file:
            yield "gguf_file: source=gguf needs the name of the .gguf file"
        yield from (f"tiny.{p}" for p in self.tiny.problems())
        if self.lora.enabled:
            yield from (f"lora.{p}" for p in self.lora.problems())
