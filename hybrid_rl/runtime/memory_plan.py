"""Memory plan of a GRPO run per GPU, before renting the GPUs (`python scripts/memory_plan.py`).

Counts, per process (one per GPU), in bytes; n parameters, b bytes per value of the training
dtype, N processes:
- parameters: the policy, n*b (ZeRO-3: 1/N of it);
- gradients: n*b (ZeRO-2 and 3: 1/N), plus, in mixed precision, the fp32 gradient partition
  the optimizer steps from (n*4/N);
- optimizer: AdamW's two fp32 moments, plus an fp32 master copy when training in bf16
  (ZeRO-1 to 3: 1/N; with offload they live in CPU memory instead);
- reference: the frozen reference model when beta > 0 (ZeRO-3: 1/N);
- activations: kept for backward, per micro-batch. Without checkpointing, per layer and token
  about h*(34 + 5*a*s/h) bytes at 16 bits (Korthikanti et al., 2022, "Reducing Activation
  Recomputation in Large Transformer Models"), scaled by the dtype; with checkpointing, only
  each layer's input (h values per token) plus one layer's full set. The logits peak at
  b + 12 bytes per vocabulary entry and token: the logits, their fp32 copy, the log-softmax
  and the entropy's probabilities;
- buffers: DeepSpeed's communication buckets at their defaults (ZeRO-2: a reduce and an
  all-gather bucket of up to 5e8 values each), and under ZeRO-3 the whole model gathered at
  once for sampling, weight sync and saving (n*b) plus a reduce bucket;
- vllm: the share of the GPU vLLM reserves up front, rollout.gpu_memory_utilization x GPU
  memory, whatever it needs; its own copy of the weights (n*b, never sharded) and the KV cache
  of the sequences sampled at once (2 x layers x kv_heads x head_dim x tokens x sequences x b)
  must fit inside that share, and the plan says when they do not.
With LoRA adapters of rank r on every linear layer of the blocks (model.lora), the gradients,
the optimizer and the buckets count only the adapters' r x (fan_in + fan_out) values per layer,
the base stays whole on every GPU outside ZeRO-3, and there is no reference (the base with the
adapters off is the reference).
These are estimates for planning (allocator fragmentation and the CUDA context, about
0.5-1 GiB, come on top); the README gives the figures for the presets.
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

    def lora_parameters(self, rank: int) -> int:
        """Adapter values of rank `rank` on q, k, v, o, gate, up and down of every layer."""
        h, kv, i = self.hidden, self.kv_heads * self.head_dim, self.intermediate
        fan_in_out = (h + h) + 2 * (h + kv) + (h + h) + 2 * (h + i) + (i + h)
        return self.layers * rank * fan_in_out

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
    # sequences sampled at once by each process: trainer.prompts_per_step x num_generations
    # (prompts_per_step is per process: every rank draws its own)
    rollout_sequences: int
    dtype: str = "bfloat16"
    beta: float = 0.0
    gradient_checkpointing: bool = False
    vllm: bool = True
    gpu_gib: float = 80.0  # memory of one GPU
    vllm_utilization: float = 0.3  # rollout.gpu_memory_utilization
    lora_rank: int = 0  # model.lora.rank when model.lora.enabled, else 0 (every weight trains)


@dataclass(frozen=True)
class Sharding:
    name: str
    gpus: int = 1
    zero_stage: int | None = None  # None: plain single process
    offload_optimizer: bool = False


BUCKET = 5e8  # DeepSpeed's default reduce and all-gather bucket sizes, in values


def plan(arch: Architecture, work: Workload, shard: Sharding) -> dict[str, float]:
    """Bytes per GPU by category (and the optimizer's CPU bytes when offloaded)."""
    n = arch.num_parameters()
    trained = arch.lora_parameters(work.lora_rank) if work.lora_rank else n
    b = DTYPE_BYTES[work.dtype]
    stage = shard.zero_stage
    split = shard.gpus if stage is not None else 1
    adapters = trained if work.lora_rank else 0  # held beside the frozen base
    params = (n + adapters) * b / (split if stage == 3 else 1)
    grads = trained * b / (split if stage in (2, 3) else 1)
    if stage is not None and b < 4:  # the fp32 gradient partition the optimizer steps from
        grads += trained * 4 / split
    optimizer = trained * (8 + (4 if b < 4 else 0)) / (split if stage in (1, 2, 3) else 1)
    with_reference = work.beta and not work.lora_rank
    reference = n * b / (split if stage == 3 else 1) if with_reference else 0.0
    s = work.prompt_tokens + work.completion_tokens
    per_token_layer = arch.hidden * (34 + 5 * arch.heads * s / arch.hidden) * b / 2
    tokens = work.micro_batch_size * s
    if work.gradient_checkpointing:
        layers = tokens * (arch.layers * arch.hidden * b + per_token_layer)
    else:
        layers = tokens * arch.layers * per_token_layer
    activations = layers + tokens * arch.vocab * (b + 12)  # logits, fp32, log-softmax, entropy
    buffers = 0.0
    if stage == 2:
        buffers = 2 * min(BUCKET, trained) * b
    elif stage == 3:  # the whole model gathered, and a reduce bucket
        buffers = n * b + min(BUCKET, trained) * b
    vllm_needs = vllm = 0.0
    if work.vllm:
        kv = 2 * arch.layers * arch.kv_heads * arch.head_dim * s * work.rollout_sequences * b
        vllm_needs = n * b + kv
        vllm = max(work.vllm_utilization * work.gpu_gib * GIB, vllm_needs)
    out = {
        "parameters": params, "gradients": grads,
        "optimizer": 0.0 if shard.offload_optimizer else optimizer, "reference": reference,
        "activations": activations, "buffers": buffers, "vllm": vllm,
    }
    out["total"] = sum(out.values())
    out["optimizer_cpu"] = optimizer if shard.offload_optimizer else 0.0
    out["vllm_needs"] = vllm_needs  # its weights and KV cache, which must fit in its share
    return out


def standard_shardings(gpus: int, dtype: str = "float32") -> list[Sharding]:
    """One GPU (in half precision through DeepSpeed, which keeps the fp32 master weights),
    then ZeRO-2, ZeRO-3 and ZeRO-3 with the optimizer offloaded over `gpus`."""
    return [
        Sharding("1 GPU") if dtype == "float32" else Sharding("1 GPU ZeRO-2", 1, 2),
        Sharding(f"{gpus} GPU{'s' * (gpus > 1)} ZeRO-2", gpus, 2),
        Sharding(f"{gpus} GPU{'s' * (gpus > 1)} ZeRO-3", gpus, 3),
        Sharding(f"{gpus} GPU{'s' * (gpus > 1)} ZeRO-3 + offload", gpus, 3, offload_optimizer=True),
    ]


def format_plan(arch: Architecture, work: Workload, gpus: int) -> str:
    """A Markdown table: one row per sharding, GiB per GPU by category."""
    cols = ["parameters", "gradients", "optimizer", "reference", "activations", "buffers",
            "vllm", "total"]
    lines = [
        f"{arch.num_parameters() / 1e9:.2f}B parameters, {work.dtype}, micro-batch "
        f"{work.micro_batch_size} x "
        f"{work.prompt_tokens}+{work.completion_tokens} tokens, {work.rollout_sequences} "
        f"sequences sampled at once per process, GPUs of {work.gpu_gib:g} GiB"
        f"{', gradient checkpointing' if work.gradient_checkpointing else ''}"
        f"{', beta > 0' if work.beta else ''}"
        f"{f', LoRA rank {work.lora_rank}' if work.lora_rank else ''}", "",
        "| setting | " + " | ".join(cols) + " | fits | CPU (optimizer) |",
        "|---" * (len(cols) + 3) + "|",
    ]
    for shard in standard_shardings(gpus, work.dtype):
        p = plan(arch, work, shard)
        cells = [f"{p[c] / GIB:.2f}" for c in cols]
        fits = "yes" if p["total"] <= work.gpu_gib * GIB else "no"
        lines.append(f"| {shard.name} | " + " | ".join(cells) + f" | {fits} | "
                     f"{p['optimizer_cpu'] / GIB:.2f} |")
    needs, share = plan(arch, work, Sharding("x"))["vllm_needs"], work.vllm_utilization
    if work.vllm and needs > share * work.gpu_gib * GIB:
        lines += ["", f"vLLM needs {needs / GIB:.2f} GiB (weights and KV cache) but "
                  f"reserves {share * work.gpu_gib:.2f} GiB: raise "
                  f"rollout.gpu_memory_utilization to at least {needs / GIB / work.gpu_gib:.2f}"]
    return "\n".join(lines)
