"""Token log-probabilities of completions under a model (policy or reference)."""
from __future__ import annotations

import torch

from hybrid_rl.algo.grpo import token_entropy
from hybrid_rl.models import fast_llama


def completion_logprobs(
    model: torch.nn.Module,
    prompt_ids: torch.Tensor,  # [S, P] left-padded
    prompt_mask: torch.Tensor,  # [S, P]
    completion_ids: torch.Tensor,  # [S, T]
    completion_mask: torch.Tensor,  # [S, T]
    temperature: float = 1.0, with_entropy: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """([S, T] log-probs of each completion token, [S, T] entropy or None).

    Position ids come from the attention mask, as in generate(), so left padding does not
    shift positions and the log-probs match the sampler's (within float error). Logits are
    divided by the sampling temperature: the ratio compares the distributions sampled from.
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
    logp = torch.log_softmax(logits, dim=-1).gather(-1, completion_ids.unsqueeze(-1)).squeeze(-1)
    entropy = token_entropy(logits.detach()) if with_entropy else None
    return logp, entropy
