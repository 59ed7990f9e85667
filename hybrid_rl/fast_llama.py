"""A lean forward pass for Llama-architecture models (the built-in model, SmolLM2, Llama...)
that lets the G completions of a prompt share one computation of that prompt.

In GRPO every prompt is sampled G times, and a plain forward pass recomputes the prompt for
each of the G rows: in sampling, in the reference pass and in the policy pass. Here the prompt
runs once per group and its keys and values are handed to the G completions (`past`), which
is exactly the same computation (causal attention: a completion token sees the prompt's keys
and the completion's own earlier keys) for fewer FLOPs; gradients flow back through the shared
prompt keys, summed over the group as autograd does for any reused tensor.

The layers are the model's own modules and parameters, so checkpoints, optimizers and weight
sync are untouched: per layer RMSNorm -> q/k/v -> RoPE (the model's rotary module) -> scaled
dot-product attention with one boolean mask (causal + padding) -> o_proj -> RMSNorm -> SwiGLU.
`supports(model)` admits only configurations this reproduces (tests compare logits and
gradients with transformers' to float tolerance); anything else takes transformers' path.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

Past = list[tuple[torch.Tensor, torch.Tensor]]  # per layer: keys, values [N, kv_heads, K, head_dim]


def supports(model: torch.nn.Module) -> bool:
    """True for a plain LlamaForCausalLM whose layers this module reproduces exactly."""
    from transformers import LlamaForCausalLM

    if type(model) is not LlamaForCausalLM or _checkpointing(model):  # leave memory savings to transformers
        return False
    c = model.config
    return (
        c.hidden_act == "silu" and not getattr(c, "attention_bias", False) and not getattr(c, "mlp_bias", False)
        and getattr(c, "pretraining_tp", 1) == 1 and not getattr(c, "attention_dropout", 0.0)
    )


def _checkpointing(model) -> bool:
    name = "is_activation_checkpointing" if hasattr(type(model), "is_activation_checkpointing") else "is_gradient_checkpointing"
    return bool(getattr(model, name, False))


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def fused_weights(model: torch.nn.Module) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per layer, q|k|v and gate|up weights stacked: one matmul each instead of three and two.
    Built from the parameters on every call (gradients flow back through the stacking); a
    sampling loop builds them once, since the weights do not change while it runs."""
    return [
        (torch.cat([l.self_attn.q_proj.weight, l.self_attn.k_proj.weight, l.self_attn.v_proj.weight]),
         torch.cat([l.mlp.gate_proj.weight, l.mlp.up_proj.weight]))
        for l in model.model.layers
    ]


def _rms_norm(norm: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """transformers' LlamaRMSNorm as one fused kernel (same maths for float32 models)."""
    if x.dtype != torch.float32:
        return norm(x)
    return F.rms_norm(x, (x.shape[-1],), norm.weight, norm.variance_epsilon)


def attention_mask_4d(attention_mask: torch.Tensor, q_len: int) -> torch.Tensor:
    """[N, K] padding mask -> [N, 1, Q, K] bool: query i (the i-th of the last Q positions)
    sees real keys up to its own position. Every query also sees itself: a padding query
    would otherwise see nothing, and its NaN would leak into real rows through 0 * NaN."""
    keys_len, dev = attention_mask.shape[1], attention_mask.device
    causal = torch.ones(q_len, keys_len, dtype=torch.bool, device=dev).tril(keys_len - q_len)
    itself = torch.zeros(q_len, keys_len, dtype=torch.bool, device=dev)
    itself[torch.arange(q_len, device=dev), torch.arange(keys_len - q_len, keys_len, device=dev)] = True
    return (causal & attention_mask.bool()[:, None, None, :]) | itself


def forward(
    model: torch.nn.Module,
    input_ids: torch.Tensor,  # [N, Q] new tokens
    attention_mask: torch.Tensor,  # [N, K] 1 for real tokens, over past and new tokens (K = past + Q)
    position_ids: torch.Tensor,  # [N, Q]
    past: Optional[Past] = None,  # keys and values of the earlier K - Q positions
    last_only: bool = False,
    fused: Optional[list] = None,  # fused_weights(model), when the caller reuses them across calls
) -> tuple[torch.Tensor, Past]:
    """(logits [N, Q, V], or [N, 1, V] with last_only; keys and values of all K positions)."""
    body = model.model
    x = body.embed_tokens(input_ids)
    cos, sin = body.rotary_emb(x, position_ids)  # [N, Q, head_dim]
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
    n, q_len = input_ids.shape
    mask = attention_mask_4d(attention_mask, q_len)
    fused = fused or fused_weights(model)
    present: Past = []
    for i, layer in enumerate(body.layers):
        attn, mlp = layer.self_attn, layer.mlp
        w_qkv, w_gate_up = fused[i]
        h = _rms_norm(layer.input_layernorm, x)
        qkv = F.linear(h, w_qkv)
        q, k, v = qkv.view(n, q_len, -1, attn.head_dim).transpose(1, 2).split(
            [attn.q_proj.out_features // attn.head_dim, attn.k_proj.out_features // attn.head_dim,
             attn.v_proj.out_features // attn.head_dim], dim=1)
        q, k = q * cos + _rotate_half(q) * sin, k * cos + _rotate_half(k) * sin
        if past is not None:
            k, v = torch.cat([past[i][0], k], dim=2), torch.cat([past[i][1], v], dim=2)
        present.append((k, v))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=attn.scaling,
                                             enable_gqa=k.shape[1] != q.shape[1])
        x = x + attn.o_proj(out.transpose(1, 2).reshape(n, q_len, -1))
        gate, up = F.linear(_rms_norm(layer.post_attention_layernorm, x), w_gate_up).chunk(2, dim=-1)
        x = x + mlp.down_proj(F.silu(gate) * up)
    x = _rms_norm(body.norm, x[:, -1:] if last_only else x)
    return model.lm_head(x), present


def select_past(past: Past, rows: torch.Tensor) -> Past:
    """The past of `rows` (a 1-D index: repeats share a prompt, fewer rows drop finished ones)."""
    return [(k[rows], v[rows]) for k, v in past]


def group_prompts(prompt_ids: torch.Tensor, prompt_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(first row of each distinct prompt [B], which of them each row uses [N]). Rows of one
    prompt need not be adjacent; padding is part of the identity (same ids, same mask)."""
    key = torch.cat([prompt_ids, prompt_mask], dim=1)
    unique, inverse = torch.unique(key, dim=0, return_inverse=True)
    first = torch.full((len(unique),), len(key), dtype=torch.long, device=key.device).scatter_reduce(
        0, inverse, torch.arange(len(key), device=key.device), reduce="amin")
    return first, inverse


def prompt_positions(prompt_mask: torch.Tensor) -> torch.Tensor:
    """Position ids as transformers derives them from a left-padded mask."""
    return (prompt_mask.cumsum(dim=1) - 1).clamp(min=0)


def completion_logits(
    model: torch.nn.Module, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, completion_ids: torch.Tensor,
    completion_mask: torch.Tensor,
) -> torch.Tensor:
    """[N, T, V] logits predicting each completion token, each distinct prompt computed once."""
    first, inverse = group_prompts(prompt_ids, prompt_mask)
    p_ids, p_mask = prompt_ids[first], prompt_mask[first]
    last, past = forward(model, p_ids, p_mask, prompt_positions(p_mask), last_only=True)  # [B, 1, V]
    lengths = prompt_mask.sum(dim=1, keepdim=True)  # [N, 1]
    positions = lengths + torch.arange(completion_ids.shape[1], device=lengths.device).unsqueeze(0)  # [N, T]
    full_mask = torch.cat([prompt_mask, completion_mask], dim=1)
    if completion_ids.shape[1] == 1:
        return last[inverse]
    # The last prompt position predicts completion token 0; completion token t predicts t + 1.
    later, _ = forward(model, completion_ids[:, :-1], full_mask[:, :-1], positions[:, :-1], select_past(past, inverse))
    return torch.cat([last[inverse], later], dim=1)
