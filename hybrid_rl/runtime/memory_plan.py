"""Memory plan of a GRPO run per GPU, before renting the GPUs (`python scripts/memory_plan.py`).

Counts, per process (one per GPU), in bytes:
- parameters: the policy in its training dtype (ZeRO-3: 1/N of it);
- gradients: same dtype and size as the parameters (ZeRO-2 and 3: 1/N);
- optimizer: AdamW's two fp32 moments, plus an fp32 master copy when training in bf16
  (ZeRO-2 and 3: 1/N; with offload they live in CPU memory instead);
- reference: the frozen reference model when beta > 0 (ZeRO-3: 1/N);
- activations: kept for backward, per micro-batch. Without checkpointing, per layer and token
  about h*(34 + 5*a*s/h) bytes at 16 bits (Korthikanti et al., 2022, "Reducing Activation
  Recomputation in Large Transformer Models"), scaled by the dtype; with checkpointing, only
  each layer's input (h values per token) plus one layer's full set. The logits add V values
  per token, counted twice (the log-softmax keeps a copy);
- vLLM: its own whole copy of the weights in every process (never sharded), and its KV cache
  for the sequences sampled at once: 2 (keys, values) x layers x kv_heads x head_dim x
  (prompt + completion tokens) x sequences. Set rollout.gpu_memory_utilization to at least
  (vllm_weights + kv_cache) / GPU memory: vLLM reserves that share up front.
These are estimates for planning (allocator fragmentation, CUDA context (~0.5-1 GiB) and
temporary buffers come on top); the README gives the figures for the presets.
"""
from __future__ import annotations

from dataclasses import dataclass

GIB = 1024**3
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


@dataclass(frozen=True)
class Architecture:
    """The numbers of a decoder-only transformer that decide its memory."""

    hidden: int
    layers: int
    heads: int
    kv_heads: int
    intermediate: int
    vocab: int
    tied_embeddings: bool = True
    qkv_bias: bool = False

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    def num_parameters(self) -> int:
        h, kv = self.hidden, self.kv_heads * self.head_dim
        attention = h * h + 2 * h * kv + h * h + ((h + 2 * kv) if self.qkv_bias else 0)
        mlp = 3 * h * self.intermediate
        per_layer = attention + mlp + 2 * h  # two RMSNorm weights
        embeddings = self.vocab * h * (1 if self.tied_embeddings else 2)
        return embeddings + self.layers * per_layer + h  # final norm

    @classmethod
    def from_hf_config(cls, config: dict) -> "Architecture":
        heads = config["num_attention_heads"]
        return cls(
            config["hidden_size"], config["num_hidden_layers"], heads,
            config.get("num_key_value_heads", heads), config["intermediate_size"],
            config["vocab_size"], bool(config.get("tie_word_embeddings", True)),
            bool(config.get("attention_bias", config.get("model_type") == "qwen2")),
        )


@dataclass(frozen=True)
class Workload:
    """The run's shape: what is sampled and trained at once."""

    prompt_tokens: int
    completion_tokens: int
    micro_batch_size: int  # sequences per forward/backward
    rollout_sequences: int  # sequences vLLM holds in its KV cache at once (prompts x G per process)
    dtype: str = "bfloat16"
    beta: float = 0.0
    gradient_checkpointing: bool = False
    vllm: bool = True


@dataclass(frozen=True)
class Sharding:
    name: str
    gpus: int = 1
    zero_stage: int | None = None  # None: plain single process
    offload_optimizer: bool = False


def plan(arch: Architecture, work: Workload, shard: Sharding) -> dict[str, float]:
    """Bytes per GPU by category (and the optimizer's CPU bytes when offloaded)."""
    n = arch.num_parameters()
    b = DTYPE_BYTES[work.dtype]
    split = shard.gpus if shard.zero_stage is not None else 1
    params = n * b / (split if shard.zero_stage == 3 else 1)
    grads = n * b / (split if shard.zero_stage in (2, 3) else 1)
    optimizer = n * (8 + (4 if b < 4 else 0)) / (split if shard.zero_stage in (1, 2, 3) else 1)
    reference = 0.0 if not work.beta else n * b / (split if shard.zero_stage == 3 else 1)
    s = work.prompt_tokens + work.completion_tokens
    per_token_layer = arch.hidden * (34 + 5 * arch.heads * s / arch.hidden) * b / 2
    tokens = work.micro_batch_size * s
    if work.gradient_checkpointing:
        layers = tokens * (arch.layers * arch.hidden * b + per_token_layer)
    else:
        layers = tokens * arch.layers * per_token_layer
    activations = layers + 2 * tokens * arch.vocab * 4  # fp32 logits and their log-softmax
    kv_cache = vllm_weights = 0.0
    if work.vllm:
        kv_cache = 2 * arch.layers * arch.kv_heads * arch.head_dim * s * work.rollout_sequences * b
        vllm_weights = n * b
    out = {
        "parameters": params, "gradients": grads,
        "optimizer": 0.0 if shard.offload_optimizer else optimizer, "reference": reference,
        "activations": activations, "vllm_weights": vllm_weights, "kv_cache": kv_cache,
    }
    out["total"] = sum(out.values())
    out["optimizer_cpu"] = optimizer if shard.offload_optimizer else 0.0
    return out


def standard_shardings(gpus: int) -> list[Sharding]:
    return [
        Sharding("1 GPU"),
        Sharding(f"{gpus} GPUs ZeRO-2", gpus, 2),
        Sharding(f"{gpus} GPUs ZeRO-3", gpus, 3),
        Sharding(f"{gpus} GPUs ZeRO-3 + offload", gpus, 3, offload_optimizer=True),
    ]


def format_plan(arch: Architecture, work: Workload, gpus: int) -> str:
    """A Markdown table: one row per sharding, GiB per GPU by category."""
    cols = ["parameters", "gradients", "optimizer", "reference", "activations", "vllm_weights",
            "kv_cache", "total"]
    lines = [
        f"{arch.num_parameters() / 1e9:.2f}B parameters, {work.dtype}, micro-batch "
        f"{work.micro_batch_size} x "
        f"{work.prompt_tokens}+{work.completion_tokens} tokens, {work.rollout_sequences} "
        "sequences sampled at once"
        f"{', gradient checkpointing' if work.gradient_checkpointing else ''}"
        f"{', beta > 0' if work.beta else ''}", "",
        "| setting | " + " | ".join(cols) + " | CPU (optimizer) |", "|---" * (len(cols) + 2) + "|",
    ]
    for shard in standard_shardings(gpus):
        p = plan(arch, work, shard)
        cells = [f"{p[c] / GIB:.2f}" for c in cols] + [f"{p['optimizer_cpu'] / GIB:.2f}"]
        lines.append(f"| {shard.name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
