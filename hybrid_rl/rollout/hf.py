"""Rollouts on the training module itself (no weight copy): the lean shared-prompt sampler for
Llama-architecture models (hybrid_rl/rollout/token_sampler.py), transformers' `generate()`
otherwise."""

from __future__ import annotations

import contextlib
from typing import Callable, Optional, Sequence

import torch

from hybrid_rl.models import fast_llama
from hybrid_rl.rollout import RolloutBatch, concat_batches
from hybrid_rl.rollout.token_sampler import sample


def eos_token_ids(model, tokenizer) -> list[int]:
    """Every id that ends a completion: the tokenizer's EOS and each one the model's
    generation config names (Qwen2.5-Instruct stops on <|im_end|> and <|endoftext|>; a base
    model's chat end token is in its generation config, not its tokenizer)."""
    ids = [tokenizer.eos_token_id]
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids += configured if isinstance(configured, (list, tuple)) else [configured]
    return sorted({int(i) for i in ids if i is not None})


def completion_mask_from(ids: torch.Tensor,
                         eos_ids: int | Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """[N, T] ids -> (mask: 1 up to and including the first EOS, truncated: [N] no EOS at all).
    `eos_ids`: every id that ends a completion (eos_token_ids)."""
    is_eos = torch.isin(ids, torch.tensor([eos_ids] if isinstance(eos_ids, int) else eos_ids))
    truncated = ~is_eos.any(dim=1)
    # Position of the first EOS (T where there is none); tokens at or before it count.
    first_eos = torch.where(truncated, ids.shape[1], is_eos.int().argmax(dim=1))
    positions = torch.arange(ids.shape[1]).unsqueeze(0)
    mask = (positions <= first_eos.unsqueeze(1)).long()
    return mask, truncated


# generate() arguments that switch off every logits processor a generation config may set
NEUTRAL_PROCESSORS = {"temperature": 1.0, "top_p": 1.0, "top_k": 0, "typical_p": 1.0,
                      "min_p": None, "repetition_penalty": 1.0, "no_repeat_ngram_size": 0,
                      "encoder_repetition_penalty": 1.0, "epsilon_cutoff": 0.0,
                      "eta_cutoff": 0.0, "bad_words_ids": None, "suppress_tokens": None,
                      "begin_suppress_tokens": None, "min_new_tokens": 0}


class HFRollout:
    def __init__(
        self, policy, tokenizer, *, max_new_tokens: int, temperature: float = 1.0,
        top_p: float = 1.0, top_k: int = 0, max_batch_sequences: int = 512,
        gather: Optional[Callable[[], contextlib.AbstractContextManager]] = None,
    ):
        self.policy, self.tokenizer = policy, tokenizer
        self.eos_ids = eos_token_ids(policy, tokenizer)
        self.gather = gather  # ZeRO-3: a context in which the sharded parameters are whole
        self.max_new_tokens, self.temperature = max_new_tokens, temperature
        self.top_p, self.top_k = top_p, top_k
        self.max_batch_sequences = max_batch_sequences

    copies_weights = False  # samples from the training module itself

    def sync_weights(self, policy: torch.nn.Module) -> None:
        # generate() runs on the very module being trained: nothing to copy.
        if policy is not self.policy:
            raise ValueError("the hf rollout backend must be given the module it was built with")

    @torch.no_grad()
    def generate(self, prompts: Sequence[str], n: int, *, greedy: bool = False) -> RolloutBatch:
        per_call = max(1, self.max_batch_sequences // n)
        with self.gather() if self.gather else contextlib.nullcontext():
            chunks = [
                self._generate(prompts[i : i + per_call], n, greedy)
                for i in range(0, len(prompts), per_call)
            ]
        return concat_batches(chunks, self.tokenizer.pad_token_id)

    def _generate(self, prompts: Sequence[str], n: int, greedy: bool) -> RolloutBatch:
        tok = self.tokenizer
        enc = tok(list(prompts), return_tensors="pt", padding=True, add_special_tokens=False)
        enc = {k: v.to(next(self.policy.parameters()).device) for k, v in enc.items()}
        # each prompt run once for its n samples (no dropout: any mode)
        if fast_llama.supports(self.policy):
            completion_ids, logprobs = sample(
                self.policy, enc["input_ids"], enc["attention_mask"], n,
                max_new_tokens=self.max_new_tokens, eos_token_ids=self.eos_ids,
                pad_token_id=tok.pad_token_id, greedy=greedy, temperature=self.temperature,
                top_k=self.top_k, top_p=self.top_p,
            )
        else:
            was_training = self.policy.training
            self.policy.eval()
            completion_ids, logprobs = self._hf_generate(enc, n, greedy)
            self.policy.train(was_training)
        enc = {k: v.cpu() for k, v in enc.items()}  # batches live on the CPU between stages
        completion_ids, logprobs = completion_ids.cpu(), logprobs.float().cpu()
        prompt_ids = enc["input_ids"].repeat_interleave(n, dim=0)
        prompt_mask = enc["attention_mask"].repeat_interleave(n, dim=0)
        mask, truncated = completion_mask_from(completion_ids, self.eos_ids)
        logprobs = torch.where(mask.bool(), logprobs, torch.zeros_like(logprobs))
        completion_ids = torch.where(mask.bool(), completion_ids, torch.full_like(completion_ids,
                                                                                  tok.pad_token_id))
        texts = tok.batch_decode(completion_ids, skip_special_tokens=True)
        return RolloutBatch(
            prompt_ids, prompt_mask, completion_ids, mask, logprobs, truncated, texts
        )

    def _hf_generate(self, enc, n: int, greedy: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """transformers' generate() for architectures the lean path does not cover. Every
        logits processor is set here: a model's generation config may carry its own
        (repetition_penalty, top_k 20, ...), which would make the sampled log-probs differ from
        the trainer's."""
        tok = self.tokenizer
        prompt_ids = enc["input_ids"].repeat_interleave(n, dim=0)
        sampling = NEUTRAL_PROCESSORS if greedy else {
            **NEUTRAL_PROCESSORS, "temperature": self.temperature, "top_p": self.top_p,
            "top_k": self.top_k,
        }
        out = self.policy.generate(
            input_ids=prompt_ids,
            attention_mask=enc["attention_mask"].repeat_interleave(n, dim=0),
            do_sample=not greedy,
            max_new_tokens=self.max_new_tokens,
            pad_token_id=tok.pad_token_id,
            eos_token_id=self.eos_ids,
            return_dict_in_generate=True,
            output_scores=True,
            **sampling,
        )
        completion_ids = out.sequences[:, prompt_ids.shape[1] :]
        # `scores` are the processed logits the sampler drew from (temperature, top-k/p applied).
        scores = torch.stack(out.scores, dim=1).float()  # [N, T, V]
        return completion_ids, torch.log_softmax(scores, dim=-1).gather(-1,
                                                                        completion_ids.unsqueeze(-1)).squeeze(-1)

