"""Sampling with the lean Llama forward (hybrid_rl/models/fast_llama.py): each prompt is run
once and its keys and values are shared by its n samples; rows that have finished are dropped
from the batch as they go, so a step costs what the unfinished completions need.

Tokens are drawn exactly as transformers' sampler draws them (temperature, then top-k, then
top-p, then a multinomial draw from the softmax), and the log-prob of each drawn token is taken
from the same processed distribution, as `generate(output_scores=True)` reports it.
"""

from __future__ import annotations

import torch

from hybrid_rl.models import fast_llama


def process_logits(scores: torch.Tensor, temperature: float, top_k: int,
                   top_p: float) -> torch.Tensor:
    """[..., V] logits -> the distribution sampled from (as transformers' warpers, same order)."""
    if temperature != 1.0:
        scores = scores / temperature
    if top_k:
        kth = torch.topk(scores, min(top_k, scores.shape[-1]))[0][..., -1, None]
        scores = scores.masked_fill(scores < kth, -float("inf"))
    if top_p < 1.0:
        sorted_scores, order = torch.sort(scores, descending=False)
        drop = sorted_scores.softmax(dim=-1).cumsum(dim=-1) <= (1 - top_p)
        drop[..., -1:] = False  # always keep the most likely token
        scores = scores.masked_fill(drop.scatter(-1, order, drop), -float("inf"))
    return scores


def sample(
    model: torch.nn.Module, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, n: int, *,
    max_new_tokens: int, eos_token_ids: list[int], pad_token_id: int, greedy: bool,
    temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Prompts [B, P] (left-padded) -> (completion ids [B*n, T], log-probs [B*n, T]); each
    prompt's n samples are contiguous, pad after EOS, T <= max_new_tokens."""
    # Inference mode skips autograd's bookkeeping per operation; the results are copied out
    # of it, so the trainer can use them like any tensor.
    with torch.inference_mode():
        tokens, logprobs = _sample(model, prompt_ids, prompt_mask, n, max_new_tokens, eos_token_ids,
                                   pad_token_id, greedy, temperature, top_k, top_p)
    return tokens.clone(), logprobs.clone()


def _sample(model, prompt_ids, prompt_mask, n, max_new_tokens, eos_token_ids, pad_token_id, greedy,
            temperature, top_k, top_p) -> tuple[torch.Tensor, torch.Tensor]:
    # built once for the loop
    weights = fast_llama.LeanWeights(model, prompt_ids.shape[1] + max_new_tokens)
    last, past = fast_llama.forward(
        model,
        prompt_ids,
        fast_llama.prompt_positions(prompt_mask),
        fast_llama.causal_bias(prompt_mask, prompt_ids.shape[1], weights.dtype),
        first_logit=-1,
        weights=weights,
    )
    dev = prompt_ids.device  # the model's: every tensor of the loop lives there
    expand = torch.arange(len(prompt_ids), device=dev).repeat_interleave(n)
    total = len(expand)
    logits, past = last[expand, -1], fast_llama.select_past(past, expand)
    # A new token sees the real prompt tokens, every token drawn since, and itself: the bias
    # grows by one open column a step.
    # [N, 1, 1, P]
    bias = fast_llama.additive(prompt_mask[expand].bool(), weights.dtype)[:, None, None, :]
    positions = prompt_mask.sum(dim=1)[expand]  # the next token's position id
    # the batch rows still being computed, as indices into the output
    rows = torch.arange(total, device=dev)
    tokens = torch.full((total, max_new_tokens), pad_token_id, dtype=torch.long, device=dev)
    logprobs = torch.zeros(total, max_new_tokens, device=dev)
    # per batch row: EOS drawn at an earlier step
    finished = torch.zeros(total, dtype=torch.bool, device=dev)
    eos = torch.tensor(eos_token_ids, device=dev)
    steps = 0
    for t in range(max_new_tokens):
        scores = (
            logits.float() if greedy else process_logits(logits.float(), temperature, top_k, top_p)
        )
        drawn = (
            scores.argmax(dim=-1)
            if greedy
            else torch.multinomial(scores.softmax(dim=-1), 1).squeeze(1)
        )
        logp = scores.log_softmax(dim=-1).gather(1, drawn.unsqueeze(1)).squeeze(1)
        tokens[rows, t] = drawn.masked_fill(finished, pad_token_id)  # finished rows stay padded
        logprobs[rows, t] = logp.masked_fill(finished, 0.0)
        finished = finished | torch.isin(drawn, eos)
        steps = t + 1
        if bool(finished.all()) or steps == max_new_tokens:  # rows dropped earlier had all finished
            break
        if int(finished.sum()) >= 0.25 * len(rows):  # drop finished rows once enough have finished
            idx = (~finished).nonzero().squeeze(1)
            rows, drawn, bias, positions, finished = (
                rows[idx], drawn[idx], bias[idx], positions[idx], finished[idx],
            )
            past = fast_llama.select_past(past, idx)
        bias = torch.cat([bias, bias.new_zeros(len(rows), 1, 1, 1)], dim=-1)
        out, past = fast_llama.forward(model, drawn.unsqueeze(1), positions.unsqueeze(1), bias,
                                       past, weights=weights)
        logits, positions = out[:, -1], positions + 1
    return tokens[:, :steps], logprobs[:, :steps]
