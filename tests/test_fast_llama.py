"""The lean Llama path against transformers: same logits, same gradients, same sampler."""
import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM
from transformers.generation.logits_process import (
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from hybrid_rl.algo.logprobs import completion_logprobs
from hybrid_rl.models import fast_llama
from hybrid_rl.models.tiny import build_char_tokenizer
from hybrid_rl.rollout import build_backend
from hybrid_rl.rollout.hf import HFRollout
from hybrid_rl.rollout.token_sampler import process_logits

TOK = build_char_tokenizer()


def llama(kv_heads=4, tie=True, **extra):
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(TOK),
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=kv_heads,
        intermediate_size=96,
        max_position_embeddings=128,
        tie_word_embeddings=tie,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        **extra,
    )
    model = LlamaForCausalLM(config)
    with torch.no_grad():  # random init is near-uniform; sharpen it so sampling and EOS matter
        for p in model.parameters():
            p.mul_(4.0)
    return model.eval()


def batch(n=3):
    """Left-padded prompts of different lengths, each repeated n times, and right-padded
    completions."""
    TOK.padding_side = "left"
    enc = TOK(["12+3=", "7-100=", "x"], return_tensors="pt", padding=True, add_special_tokens=False)
    TOK.padding_side = "right"
    comp = TOK(["15</s>", "-93</s>", "ab", "9", "1+1=2</s>", "", "7", "77</s>", "777"][: 3 * n],
               return_tensors="pt", padding=True, add_special_tokens=False)
    TOK.padding_side = "left"
    return (enc["input_ids"].repeat_interleave(n, 0), enc["attention_mask"].repeat_interleave(n, 0),
            comp["input_ids"], comp["attention_mask"])


def hf_completion_logits(model, pid, pm, cid, cm):
    ids, att = torch.cat([pid, cid], 1), torch.cat([pm, cm], 1)
    logits = model(input_ids=ids, attention_mask=att,
                   position_ids=(att.cumsum(1) - 1).clamp(min=0)).logits
    return logits[:, pid.shape[1] - 1 : -1]


# plain and grouped-query attention
@pytest.mark.parametrize("kv_heads, tie", [(4, True), (2, False)])
def test_forward_logits_match_transformers(kv_heads, tie):
    model = llama(kv_heads, tie)
    assert fast_llama.supports(model)
    pid, pm, cid, cm = batch()
    ids, att = torch.cat([pid, cid], 1), torch.cat([pm, cm], 1)
    pos = (att.cumsum(1) - 1).clamp(min=0)
    with torch.no_grad():
        ours, _ = fast_llama.forward(
            model, ids, pos, fast_llama.causal_bias(att, ids.shape[1], torch.float32)
        )
        theirs = model(input_ids=ids, attention_mask=att, position_ids=pos).logits
    assert torch.allclose(ours[att.bool()], theirs[att.bool()], atol=1e-5)
    assert torch.isfinite(ours).all()  # padding rows too: no NaN to leak anywhere


def uneven_batch():
    """Rows of one prompt scattered and in unequal numbers (a micro-batch that cut groups)."""
    pid, pm, cid, cm = batch()
    order = torch.tensor([4, 0, 8, 1, 5, 2])  # prompt 1, 0, 2, 0, 1, 0: three, two and one rows
    return pid[order], pm[order], cid[order], cm[order]


@pytest.mark.parametrize("layout", ["packed", "shared"])
@pytest.mark.parametrize("make_batch", [batch, uneven_batch])
def test_shared_prompt_logits_and_gradients_match_the_full_forward(layout, make_batch):
    model = llama(2, False)
    pid, pm, cid, cm = make_batch()
    model.zero_grad()
    ours = fast_llama.completion_logits(model, pid, pm, cid, cm, layout=layout)
    (ours.log_softmax(-1)[..., 5] * cm).sum().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    theirs = hf_completion_logits(model, pid, pm, cid, cm)
    (theirs.log_softmax(-1)[..., 5] * cm).sum().backward()
    assert torch.allclose(ours[cm.bool()], theirs[cm.bool()], atol=1e-5)
    # float32 summation order differs: relative norm
    for ours_g, p in zip(grads, model.parameters()):
        assert (ours_g - p.grad).norm() <= 1e-5 * p.grad.norm() + 1e-7


def test_completion_logprobs_take_the_shared_path_with_the_same_result():
    model = llama()
    pid, pm, cid, cm = batch()
    logp = completion_logprobs(model, pid, pm, cid, cm, temperature=0.7).logp
    ref = torch.log_softmax(hf_completion_logits(model, pid, pm, cid, cm).float() / 0.7, -1)
    ref = ref.gather(-1, cid.unsqueeze(-1)).squeeze(-1)
    assert torch.allclose(logp[cm.bool()], ref[cm.bool()], atol=1e-5)


def test_packing_is_chosen_for_short_completions_only():
    model = llama()  # hidden 64: the built-in model's scale
    # 8 prompts of 12 tokens x 4 completions of 4 tokens: the extra attention is ~1% of the pass
    assert fast_llama.packing_pays(
        model, num_prompts=8, width=4, prompt_len=12, steps=3, num_rows=32
    )
    # 512-token completions: every token would attend over 4 x 512 keys instead of 524
    assert not fast_llama.packing_pays(
        model, num_prompts=8, width=4, prompt_len=12, steps=511, num_rows=32
    )
    # Half-empty slots (groups cut by a micro-batch) cost their projections too
    assert not fast_llama.packing_pays(
        model, num_prompts=8, width=16, prompt_len=12, steps=3, num_rows=16
    )


def test_partitioned_parameters_take_transformers_path():
    """A ZeRO-3 parameter outside its module's forward is an empty shard (ds_id marks it)."""
    model = llama()
    assert fast_llama.supports(model)
    weight = model.model.layers[0].mlp.up_proj.weight
    weight.data = torch.empty(0)
    weight.ds_id = 7
    assert not fast_llama.supports(model)


def test_groups_find_repeats_anywhere():
    ids = torch.tensor([[0, 5], [6, 7], [0, 5], [6, 7], [0, 6]])
    mask = torch.tensor([[0, 1], [1, 1], [0, 1], [1, 1], [0, 1]])
    groups = fast_llama.Groups(ids, mask)
    first, inverse = groups.first, groups.inverse
    assert sorted(first.tolist()) == [0, 1, 4]
    assert [first[i].item() for i in inverse] == [0, 1, 0, 1, 4]
    assert groups.slot.tolist() == [0, 0, 1, 1, 0] and groups.width == 2


@pytest.mark.parametrize("temperature, top_k, top_p", [(1.0, 0, 1.0), (0.7, 0, 1.0), (1.0, 5, 1.0),
                                                         (1.3, 0, 0.8), (0.9, 7, 0.5)])
def test_processed_logits_match_transformers_warpers(temperature, top_k, top_p):
    scores = torch.randn(6, 40, generator=torch.Generator().manual_seed(1)) * 3
    expected = scores.clone()
    if temperature != 1.0:
        expected = TemperatureLogitsWarper(temperature)(None, expected)
    if top_k:
        expected = TopKLogitsWarper(top_k)(None, expected)
    if top_p < 1.0:
        expected = TopPLogitsWarper(top_p)(None, expected)
    assert torch.equal(process_logits(scores, temperature, top_k, top_p), expected)


def test_greedy_sampler_matches_transformers_generate():
    model = llama()
    rollout = build_backend("hf", model, TOK, max_new_tokens=12)
    ours = rollout.generate(["12+3=", "7-100=", "x"], 2, greedy=True)
    enc = TOK(["12+3=", "7-100=", "x"], return_tensors="pt", padding=True, add_special_tokens=False)
    theirs, theirs_logp = HFRollout._hf_generate(rollout, enc, 2, greedy=True)
    T = ours.completion_ids.shape[1]
    mask = ours.completion_mask.bool()
    assert torch.equal(ours.completion_ids[mask], theirs[:, :T][mask])
    assert torch.allclose(ours.rollout_logprobs[mask], theirs_logp[:, :T][mask], atol=1e-5)


SAMPLING = [(1.0, 0, 1.0), (0.8, 0, 1.0), (1.0, 5, 1.0), (1.0, 0, 0.7), (0.8, 20, 0.9)]


@pytest.mark.parametrize("path", ["lean", "transformers"])
@pytest.mark.parametrize("temperature, top_k, top_p", SAMPLING)
def test_sampled_logprobs_equal_the_trainers_for_every_sampling_setting(path, temperature, top_k,
                                                                        top_p):
    """The trainer applies the sampler's temperature, top-k and top-p, so on the same tokens
    its log-probs equal the rollout's (the ratio and importance weights compare one
    distribution). `full` is the untruncated one the KL term uses."""
    model = llama() if path == "lean" else llama(attention_bias=True)  # bias: generate()
    assert fast_llama.supports(model) == (path == "lean")
    torch.manual_seed(3)
    rollout = build_backend("hf", model, TOK, max_new_tokens=24, temperature=temperature,
                            top_k=top_k, top_p=top_p)
    out = rollout.generate(["12+3=", "7-100=", "x"], 8)
    assert out.truncated.any() and (~out.truncated).any()  # some rows finished early, some did not
    got = completion_logprobs(model, out.prompt_ids, out.prompt_mask, out.completion_ids,
                              out.completion_mask, temperature, top_k=top_k, top_p=top_p)
    m = out.completion_mask.bool()
    assert torch.allclose(got.logp[m], out.rollout_logprobs[m], atol=1e-4)
    truncates = top_k or top_p < 1.0
    assert (got.full[m] < got.logp[m] - 1e-3).any() == bool(truncates)  # mass was cut
    assert (out.completion_ids[~m] == TOK.pad_token_id).all()


def test_a_token_outside_the_truncation_gets_a_finite_floor_and_no_gradient():
    model = llama()
    pid, pm = torch.tensor([[5, 6, 7]]), torch.ones(1, 3, dtype=torch.long)
    with torch.no_grad():
        logits = model(input_ids=pid).logits[0, -1]
    unlikely = int(logits.argmin())  # far outside top-k=1
    got = completion_logprobs(model, pid, pm, torch.tensor([[unlikely]]), torch.ones(1, 1),
                              top_k=1)
    assert got.logp.item() == -1.0e4 and torch.isfinite(got.full).all()
    got.logp.sum().backward()
    assert all(p.grad is None or not p.grad.any() for p in model.parameters())


def test_unsupported_models_take_transformers_path():
    assert not fast_llama.supports(llama(attention_bias=True))
    model = llama()
    model.gradient_checkpointing_enable()
    assert not fast_llama.supports(model)


def test_rms_norm_matches_transformers_in_float32_and_bfloat16():
    from transformers.models.llama.modeling_llama import LlamaRMSNorm

    for dtype in (torch.float32, torch.bfloat16):
        norm = LlamaRMSNorm(64, eps=1e-5).to(dtype)
        with torch.no_grad():
            norm.weight.mul_(torch.randn(64, generator=torch.Generator().manual_seed(0)).to(dtype))
        x = (torch.randn(8, 64, generator=torch.Generator().manual_seed(1)) * 3).to(dtype)
        assert torch.allclose(fast_llama._rms_norm(norm, x).float(), norm(x).float(), atol=1e-6)
