"""A lean forward pass for Llama-architecture models (the built-in model, SmolLM2, Llama...)
that lets the G completions of a prompt share one computation of that prompt.

In GRPO every prompt is sampled G times, and a plain forward pass recomputes the prompt for
each of the G rows: in sampling, in the reference pass and in the policy pass. Here the prompt
runs once per group, in one of two exact layouts (causal attention: a completion token sees
the prompt's keys and the completion's own earlier keys):
- shared past: the prompts run first and their keys and values are handed to the G rows of
  their group (`past`), which then run alone; sampling always works this way;
- packed: each group is one sequence, prompt then its G completions side by side, and one
  attention mask keeps every completion to the prompt and itself. One pass instead of two
  halves the per-operation overhead that dominates small models (the policy pass with its
  backward takes 0.75x the time of the shared past one on the built-in model), for more
  attention arithmetic: each completion token's scores cover the whole group. It is chosen
  while that extra stays under PACKED_EXTRA_WORK of the pass's arithmetic.
Gradients flow back through the shared prompt, summed over the group as autograd does for any
reused tensor.

The layers are the model's own modules and parameters, so checkpoints, optimizers and weight
sync are untouched: per layer RMSNorm -> q|k|v -> RoPE (the model's rotary module) -> scaled
dot-product attention with one additive mask -> o_proj -> RMSNorm -> SwiGLU.
`supports(model)` admits only configurations this reproduces (tests compare logits and
gradients with transformers' to float tolerance); anything else takes transformers' path.

A LoRA policy (peft, hybrid_rl/models/lora.py) runs here too: each adapted projection's weight
is read as W + scale * B @ A, which is peft's W x + scale * B (A x) up to float rounding, and
gradients reach A and B through that sum; its reference (`AdaptersOff`) reads W alone.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from hybrid_rl.models.lora import AdaptersOff, adapted_weight, has_adapters

Past = list[tuple[torch.Tensor, torch.Tensor]]  # per layer: keys, values [N, kv_heads, K, head_dim]


def resolve(model: torch.nn.Module) -> tuple[torch.nn.Module, bool]:
    """(the LlamaForCausalLM to run, whether LoRA adapters count): a LoRA policy's inner model
    with its adapters, the reference's with them off, or the model itself."""
    if isinstance(model, AdaptersOff):
        return model.policy.get_base_model(), False
    if has_adapters(model):
        return model.get_base_model(), True
    return model, False


def supports(model: torch.nn.Module) -> bool:
    """True for a plain LlamaForCausalLM whose layers this module reproduces exactly, alone or
    with LoRA adapters on its projections."""
    from transformers import LlamaForCausalLM

    model, _ = resolve(model)
    if type(model) is not LlamaForCausalLM or _checkpointing(model) or _partitioned(model):
        return False  # leave memory savings to transformers
    if not _plain_adapters(model):
        return False
    c = model.config
    return (
        c.hidden_act == "silu"
        and not getattr(c, "attention_bias", False)
        and not getattr(c, "mlp_bias", False)
        and getattr(c, "pretraining_tp", 1) == 1
        and not getattr(c, "attention_dropout", 0.0)
        # one rotary table serves a whole call: not for types whose frequencies follow the length
        and getattr(model.model.rotary_emb, "rope_type", "default") not in ("dynamic", "longrope")
    )


def _plain_adapters(model: torch.nn.Module) -> bool:
    """Adapters only on the blocks' projections, unmerged, without dropout or DoRA: what
    `adapted_weight` reproduces exactly."""
    if type(model.lm_head) is not torch.nn.Linear or \
            type(model.model.embed_tokens) is not torch.nn.Embedding:
        return False
    for module in model.modules():
        if hasattr(module, "lora_A"):
            if getattr(module, "merged", False) or not hasattr(module, "base_layer"):
                return False
            for name in module.active_adapters:
                if not isinstance(module.lora_dropout[name], torch.nn.Identity) or \
                        module.use_dora.get(name, False):
                    return False
    return True


def _checkpointing(model) -> bool:
    name = (
        "is_activation_checkpointing"
        if hasattr(type(model), "is_activation_checkpointing")
        else "is_gradient_checkpointing"
    )
    return bool(getattr(model, name, False))


def _partitioned(model: torch.nn.Module) -> bool:
    """DeepSpeed ZeRO-3 keeps only a shard of a large parameter outside its module's forward
    hook; this path reads parameters directly, so it must see them whole."""
    return any(p.numel() == 0 and hasattr(p, "ds_id") for p in model.parameters())


class Rope:
    """The model's rotary cos/sin for positions 0..length-1, computed once by its own rotary
    module (the values are bitwise those it computes per position: one product per entry), with
    rotate_half's sign folded into sin: rotate_half(x) * sin == roll(x, d/2) * signed_sin."""

    def __init__(self, model: torch.nn.Module, length: int):
        body, dtype = model.model, model.model.embed_tokens.weight.dtype
        positions = torch.arange(length, device=body.embed_tokens.weight.device).unsqueeze(0)
        # rotary reads only dtype/device
        probe = torch.empty(1, length, 1, dtype=dtype, device=positions.device)
        cos, sin = body.rotary_emb(probe, positions)  # [1, length, head_dim]
        half = cos.shape[-1] // 2
        self.cos, self.signed_sin = cos[0], torch.cat([-sin[0, :, :half], sin[0, :, half:]], dim=-1)

    def at(self, position_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[N, Q] positions -> cos, signed sin as [N, Q, 1, head_dim] (broadcast over heads)."""
        return self.cos[position_ids].unsqueeze(2), self.signed_sin[position_ids].unsqueeze(2)


class LeanWeights:
    """What a forward pass reads, gathered once per call site: per layer the norm weights, q|k|v
    and gate|up stacked (one matmul each instead of three and two), o and down; the rotary
    table. Built from the parameters (gradients flow back through the stacking); a sampling
    loop or a prompt-then-completion pair builds it once, as the weights do not change between."""

    def __init__(self, model: torch.nn.Module, positions: int):
        model, adapters_on = resolve(model)

        def w(module):
            return adapted_weight(module, adapters_on)

        self.layers = [
            (
                layer.input_layernorm,
                torch.cat([w(layer.self_attn.q_proj), w(layer.self_attn.k_proj),
                           w(layer.self_attn.v_proj)]),
                w(layer.self_attn.o_proj),
                layer.post_attention_layernorm,
                torch.cat([w(layer.mlp.gate_proj), w(layer.mlp.up_proj)]),
                w(layer.mlp.down_proj),
            )
            for layer in model.model.layers
        ]
        attn = model.model.layers[0].self_attn
        self.head_dim, self.scaling = attn.head_dim, attn.scaling
        self.q_heads = attn.q_proj.out_features // attn.head_dim
        self.kv_heads = attn.k_proj.out_features // attn.head_dim
        self.rope = Rope(model, positions)
        self.dtype = model.model.embed_tokens.weight.dtype


def _rms_norm(norm: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """transformers' LlamaRMSNorm: normalised in float32, scaled in the model's dtype."""
    if x.dtype == torch.float32:
        return F.rms_norm(x, (x.shape[-1],), norm.weight, norm.variance_epsilon)
    return norm.weight * F.rms_norm(x.float(), (x.shape[-1],), None,
                                    norm.variance_epsilon).to(x.dtype)


def attention_mask_4d(attention_mask: torch.Tensor, q_len: int) -> torch.Tensor:
    """[N, K] padding mask -> [N, 1, Q, K] bool: query i (the i-th of the last Q positions)
    sees real keys up to its own position. Every query also sees itself: a padding query
    would otherwise see nothing, and its NaN would leak into real rows through 0 * NaN."""
    keys_len, dev = attention_mask.shape[1], attention_mask.device
    keys, queries = (
        torch.arange(keys_len, device=dev),
        torch.arange(keys_len - q_len, keys_len, device=dev),
    )
    causal, itself = keys <= queries[:, None], keys == queries[:, None]  # [Q, K]
    return (causal & attention_mask.bool()[:, None, None, :]) | itself


def additive(allowed: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A boolean mask as the 0 / -inf bias attention adds, built once for all layers (a
    boolean mask would be converted in every layer)."""
    return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill_(
        ~allowed, -float("inf")
    )


def causal_bias(attention_mask: torch.Tensor, q_len: int, dtype: torch.dtype) -> torch.Tensor:
    """additive(attention_mask_4d(...)): causal attention over a padded batch."""
    return additive(attention_mask_4d(attention_mask, q_len), dtype)


def forward(
    model: torch.nn.Module,
    input_ids: torch.Tensor,  # [N, Q] new tokens
    position_ids: torch.Tensor,  # [N, Q]
    # [N, 1, Q, K] additive attention mask (K = past + Q): additive(attention_mask_4d(...))
    bias: torch.Tensor,
    past: Optional[Past] = None,  # keys and values of the earlier K - Q positions
    first_logit: int = 0,  # logits for positions first_logit.. only (-1: the last)
    weights: Optional[LeanWeights] = None,  # when the caller reuses them across calls
) -> tuple[torch.Tensor, Past]:
    """(logits [N, Q - first_logit, V]; keys and values of all K positions)."""
    w = weights or LeanWeights(model, int(position_ids.max()) + 1)
    model, _ = resolve(model)
    body = model.model
    # Functional calls only: a module call would run ZeRO-3's hooks, whose release after the
    # embedding would also empty a tied lm_head weight gathered for sampling.
    x = F.embedding(input_ids, body.embed_tokens.weight, body.embed_tokens.padding_idx)
    cos, sin = w.rope.at(position_ids)  # [N, Q, 1, head_dim]
    n, q_len = input_ids.shape
    rotated = w.q_heads + w.kv_heads  # q and k heads, rotated together
    present: Past = []
    for i, (norm1, w_qkv, w_o, norm2, w_gate_up, w_down) in enumerate(w.layers):
        qkv = F.linear(_rms_norm(norm1, x), w_qkv).view(n, q_len, -1, w.head_dim)
        # split, not slicing: its backward is one cat
        qk, v = qkv.split([rotated, w.kv_heads], dim=2)
        qk = (qk * cos + qk.roll(w.head_dim // 2, dims=-1) * sin).transpose(1, 2)
        (q, k), v = qk.split([w.q_heads, w.kv_heads], dim=1), v.transpose(1, 2)
        if past is not None:
            k, v = torch.cat([past[i][0], k], dim=2), torch.cat([past[i][1], v], dim=2)
        present.append((k, v))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=w.scaling,
                                             enable_gqa=w.kv_heads != w.q_heads)
        x = x + F.linear(out.transpose(1, 2).reshape(n, q_len, -1), w_o)
        gate, up = F.linear(_rms_norm(norm2, x), w_gate_up).chunk(2, dim=-1)
        x = x + F.linear(F.silu(gate) * up, w_down)
    x = _rms_norm(body.norm, x[:, first_logit:])
    return F.linear(x, model.lm_head.weight), present


def select_past(past: Past, rows: torch.Tensor) -> Past:
    """The past of `rows` (a 1-D index: repeats share a prompt, fewer rows drop finished ones)."""
    return [(k[rows], v[rows]) for k, v in past]


class Groups:
    """Which rows share a prompt. Rows of one prompt need not be adjacent; padding is part of
    the identity (same ids, same mask). A dictionary over the rows' values: microseconds,
    where torch.unique sorts."""

    def __init__(self, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor):
        index: dict[tuple, int] = {}  # prompt -> its index among the distinct prompts
        firsts, inverse, slot, sizes = [], [], [], []
        for i, key in enumerate(zip(map(tuple, prompt_ids.tolist()), map(tuple,
                                                                         prompt_mask.tolist()))):
            if key not in index:
                index[key] = len(firsts)
                firsts.append(i)
                sizes.append(0)
            g = index[key]
            inverse.append(g)
            slot.append(sizes[g])
            sizes[g] += 1
        dev = prompt_ids.device
        self.first = torch.tensor(firsts, device=dev)  # [B] the first row of each distinct prompt
        self.inverse = torch.tensor(inverse, device=dev)  # [N] each row's prompt, in 0..B-1
        self.slot = torch.tensor(slot, device=dev)  # [N] each row's place among its prompt's rows
        self.width = max(sizes, default=0)  # the most rows of one prompt


def prompt_positions(prompt_mask: torch.Tensor) -> torch.Tensor:
    """Position ids as transformers derives them from a left-padded mask."""
    return (prompt_mask.cumsum(dim=1) - 1).clamp(min=0)


# Packing is chosen while its extra attention arithmetic is at most this share of the pass.
PACKED_EXTRA_WORK = 0.1


def packing_pays(model: torch.nn.Module, num_prompts: int, width: int, prompt_len: int, steps: int,
                 num_rows: int) -> bool:
    """Whether the packed layout's extra attention work (score and value products over whole
    groups) stays within PACKED_EXTRA_WORK of the shared-past pass's arithmetic, per layer."""
    model, _ = resolve(model)
    c = model.config
    hidden, layer_params = c.hidden_size, sum(p.numel() for p in model.model.layers[0].parameters())
    packed_len = prompt_len + width * steps
    packed_scores = num_prompts * packed_len**2
    shared_scores = num_prompts * prompt_len**2 + num_rows * steps * (prompt_len + steps)
    shared_tokens = num_prompts * prompt_len + num_rows * steps
    shared_work = 2 * layer_params * shared_tokens + 4 * hidden * shared_scores
    packed_work = 2 * layer_params * num_prompts * packed_len + 4 * hidden * packed_scores
    return packed_work - shared_work <= PACKED_EXTRA_WORK * shared_work


def completion_logits(
    model: torch.nn.Module, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor,
        completion_ids: torch.Tensor, completion_mask: torch.Tensor, layout: Optional[str] = None,
) -> torch.Tensor:
    """[N, T, V] logits predicting each completion token, each distinct prompt computed once,
    in the `layout` given ("packed" or "shared") or the one packing_pays picks."""
    groups = Groups(prompt_ids, prompt_mask)
    lengths = prompt_mask.sum(dim=1, keepdim=True)  # [N, 1]
    # [N, T]
    positions = lengths + torch.arange(completion_ids.shape[1], device=lengths.device).unsqueeze(0)
    weights = LeanWeights(model, int(positions.max()) + 1)  # one build for both passes
    steps = completion_ids.shape[1] - 1  # completion tokens that are inputs: all but the last
    if layout is None:
        layout = (
            "packed"
            if steps
            and packing_pays(
                model, len(groups.first), groups.width, prompt_ids.shape[1], steps, len(prompt_ids)
            )
            else "shared"
        )
    if layout == "packed":
        return _packed_logits(model, groups, prompt_ids, prompt_mask, completion_ids,
                              completion_mask, weights)
    p_ids, p_mask = prompt_ids[groups.first], prompt_mask[groups.first]
    last, past = forward(
        model,
        p_ids,
        prompt_positions(p_mask),
        causal_bias(p_mask, p_ids.shape[1], weights.dtype),
        first_logit=-1,
        weights=weights,
    )  # [B, 1, V]
    if not steps:
        return last[groups.inverse]
    full_mask = torch.cat([prompt_mask, completion_mask[:, :-1]], dim=1)
    # The last prompt position predicts completion token 0; completion token t predicts t + 1.
    later, _ = forward(
        model,
        completion_ids[:, :-1],
        positions[:, :-1],
        causal_bias(full_mask, steps, weights.dtype),
        select_past(past, groups.inverse),
        weights=weights,
    )
    return torch.cat([last[groups.inverse], later], dim=1)


def _packed_logits(model, groups: Groups, prompt_ids, prompt_mask, completion_ids, completion_mask,
                   weights: LeanWeights) -> torch.Tensor:
    """One sequence per prompt: [prompt | slot 0's completion | slot 1's | ...] (each
    completion without its last token), slots a prompt has fewer rows for left as padding."""
    p_ids, p_mask = prompt_ids[groups.first], prompt_mask[groups.first]
    (b, p_len), width, dev = p_ids.shape, groups.width, prompt_ids.device
    steps = completion_ids.shape[1] - 1
    slots = torch.zeros(b, width, steps, dtype=completion_ids.dtype, device=dev)
    slots[groups.inverse, groups.slot] = completion_ids[:, :-1]
    slot_mask = torch.zeros(b, width, steps, dtype=completion_mask.dtype, device=dev)
    slot_mask[groups.inverse, groups.slot] = completion_mask[:, :-1]
    ids, mask = (
        torch.cat([p_ids, slots.view(b, -1)], dim=1),
        torch.cat([p_mask, slot_mask.view(b, -1)], dim=1),
    )
    steps_pos = p_mask.sum(dim=1, keepdim=True) + torch.arange(steps, device=dev)  # [B, steps]
    positions = torch.cat([prompt_positions(p_mask), steps_pos.repeat(1, width)], dim=1)
    # Segments: -1 for the prompt, s for slot s. A query sees earlier keys of its own segment
    # and the whole (causal) prompt.
    segment = torch.cat([torch.full((p_len,), -1, device=dev),
                         torch.arange(width, device=dev).repeat_interleave(steps)])
    same = (segment[None, :] == segment[:, None]) | (segment[None, :] == -1)
    # a query's own segment: it still sees itself
    allowed = attention_mask_4d(mask, ids.shape[1]) & same
    logits, _ = forward(model, ids, positions, additive(allowed, weights.dtype),
                        first_logit=p_len - 1,
                        weights=weights)  # [B, 1 + width * steps, V]: the prompt's last position on
    later = logits[:, 1:].view(b, width, steps, -1)[groups.inverse, groups.slot]  # [N, steps, V]
    return torch.cat([logits[groups.inverse, :1], later], dim=1)
