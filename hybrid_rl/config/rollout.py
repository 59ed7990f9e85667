"""`rollout`: how completions are sampled."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

from hybrid_rl.config.checks import positive


@dataclass
class RolloutConfig:
    """How completions are sampled."""

    # a registered rollout backend (hybrid_rl/plugins.py): hf (transformers) | vllm | a plug-in
    backend: str = "hf"
    max_new_tokens: int = 8  # completion length limit, in tokens
    temperature: float = 1.0  # sampling temperature (also applied to training log-probs)
    top_p: float = 1.0  # nucleus sampling (1 = off)
    top_k: int = 0  # top-k sampling (0 = off)
    max_batch_sequences: int = 512  # most sequences per generate() call
    # backend=vllm only (README "Scaling up"):
    # share of GPU memory vLLM may take (weights + KV cache), colocated with training
    gpu_memory_utilization: float = 0.3
    kv_cache_gib: float = 1.0  # CPU builds of vLLM: KV-cache size in GiB (VLLM_CPU_KVCACHE_SPACE)
    # skip CUDA-graph / torch.compile capture (faster start, slower sampling)
    enforce_eager: bool = True
    # after each weight sync, the engine's log-probs on a probe text must match the policy's
    verify_sync: bool = True
    # verify_sync: largest allowed mean log-prob gap over the probe (fp32; bf16 engines: 0.1)
    sync_tolerance: float = 1e-3
    # README "Asynchronous rollouts": a worker process samples the batches of the next N steps
    # while the trainer updates on this one, from weights exactly N updates old (0: synchronous)
    async_steps: int = 0
    worker_threads: int = 1  # async_steps > 0: the rollout worker's torch CPU threads
    # async_steps > 0: a worker silent this long on a batch is killed and restarted
    worker_timeout_s: float = 1800.0
    max_worker_restarts: int = 3  # async_steps > 0: restarts before the run stops with an error

    def problems(self) -> Iterator[str]:
        if not 0.0 < self.gpu_memory_utilization <= 1.0:
            yield f"gpu_memory_utilization: must be in (0, 1], got {self.gpu_memory_utilization}"
        yield from positive("kv_cache_gib", self.kv_cache_gib)
        yield from positive("sync_tolerance", self.sync_tolerance)
        yield from positive("max_new_tokens", self.max_new_tokens)
        yield from positive("temperature", self.temperature)
        yield from positive("top_k", self.top_k, allow_zero=True)
        yield from positive("max_batch_sequences", self.max_batch_sequences)
        yield from positive("async_steps", self.async_steps, allow_zero=True)
        yield from positive("worker_threads", self.worker_threads)
        yield from positive("worker_timeout_s", self.worker_timeout_s)
        yield from positive("max_worker_restarts", self.max_worker_restarts, allow_zero=True)
        if not 0.0 < self.top_p <= 1.0:
            yield f"top_p: must be in (0, 1], got {self.top_p}"
