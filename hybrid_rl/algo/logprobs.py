"""Token log-probabilities of completions under a model (policy or reference)."""
from __future__ import annotations

from typing import NamedTuple, Optional

import torch

from hybrid_rl.algo.grpo import entropy_of_log_softmax
from hybrid_rl.models import fast_llama
from hybrid_rl.rollout.token_sampler import process_logits

# The log-prob given to a token that top-k/top-p cut from the distribution (probability 0):
# finite, so a ratio against it is 0 (no gradient) rather than NaN.
OUTSIDE_TRUNCATION = -1.0e4


class TokenLogprobs(NamedTuple):
    logp: torch.Tensor  # [S, T] under the distribution sampled from (temperature, top-k, top-p)
    entropy: Optional[torch.Tensor]  # [S, T] of the temperature-scaled distribution, or None
    full: torch.Tensor  # [S, T] under the temperature-scaled distribution (no truncation: the KL)


def completion_logprobs(
    model: torch.nn.Module,
    prompt_ids: torch.Tensor,  # [S, P] left-padded
    prompt_mask: torch.Tensor,  # [S, P]
    completion_ids: torch.Tensor,  # [S, T]
    completion_mask: torch.Tensor,  # [S, T]
    temperature: float = 1.0, with_entropy: bool = False, top_k: int = 0, top_p: float = 1.0,
) -> TokenLogprobs:
    """Log-probs of each completion token under the model.

    Position ids come from the attention mask, as in generate(), so left padding does not
    shift positions and the log-probs match the sampler's (within float error). The logits
    go through the sampler's own processing (temperature, then top-k, then top-p: see
    hybrid_rl/rollout/token_sampler.py), so the ratio and the importance weights compare the
    distribution that was sampled from. `full` skips top-k/top-p: the KL to the reference is
    taken between whole distributions, where a truncated reference would make it infinite.
    """
    device = next(model.parameters()).device  # batches are kept on the CPU between stages
    prompt_ids, prompt_mask = prompt_ids.to(device), prompt_mask.to(device)
    completion_ids, completion_mask = completion_ids.to(device), completion_mask.to(device)
    if fast_llama.supports(model):  # each distinct prompt computed once for its group
        # Without gradients (reference, old policy) inference mode skips autograd's bookkeeping
        # per operation; the log-probs below are computed outside it, so they are plain tensors.
        with torch.inference_mode(not torch.is_grad_enabled()):
            logits = fast_llama.completion_logits(
                model, prompt_ids, prompt_mask, completion_ids, completion_mask
            )
    else:
        input_ids = torch.cat([prompt_ids, completion_ids], dim=1)
        attention = torch.cat([prompt_mask, completion_mask], dim=1)
        position_ids = (attention.cumsum(dim=1) - 1).clamp(min=0)
        logits = model(input_ids=input_ids, attention_mask=attention,
                       position_ids=position_ids).logits
        # The logit at position i predicts token i + 1: keep those that predict completion tokens.
        logits = logits[:, prompt_ids.shape[1] - 1 : -1, :]
    logits = logits.float() if temperature == 1.0 else logits.float() / temperature  # [S, T, V]
    ids = completion_ids.unsqueeze(-1)
    log_softmax = torch.log_softmax(logits, dim=-1)  # [S, T, V]
    full = log_softmax.gather(-1, ids).squeeze(-1)
    logp = full
    if top_k or top_p < 1.0:
        sampled = process_logits(logits, 1.0, top_k, top_p)
        logp = torch.log_softmax(sampled, dim=-1).gather(-1, ids).squeeze(-1)
        logp = logp.clamp(min=OUTSIDE_TRUNCATION)
    # from the log-softmax already taken (a vocabulary of 49,152 makes a second one cost)
    entropy = entropy_of_log_softmax(log_softmax.detach()) if with_entropy else None
    return TokenLogprobs(logp, entropy, full)
