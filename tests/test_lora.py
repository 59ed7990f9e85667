"""LoRA adapters (model.lora): the reference is the base with the adapters off, the merged
weights are the adapted model's, checkpoints are PEFT folders, and a killed LoRA run resumes
exactly."""
import copy
import importlib.util
import json
import os
import subprocess
import sys

import pytest
import torch
from helpers.runs import ROOT, TINY_OVERRIDES, kill_once_written

from hybrid_rl.algo.logprobs import completion_logprobs
from hybrid_rl.config.model import LoraConfig
from hybrid_rl.models import fast_llama, lora
from hybrid_rl.models.loading import ModelLoadError, frozen_copy, load_policy
from hybrid_rl.models.tiny import build_tiny_llama


def tiny_base():
    return build_tiny_llama(104, hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64,
                            max_position_embeddings=64, init_seed=0)


def trained_adapters(base):
    """Adapters that change the model (fresh ones start at B = 0: no change at all)."""
    policy = lora.add_adapters(base, LoraConfig(rank=4, alpha=8.0))
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in policy.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    return policy


def batch():
    g = torch.Generator().manual_seed(0)
    prompt = torch.randint(3, 100, (4, 5), generator=g)
    prompt_mask = torch.ones_like(prompt)
    prompt_mask[0, :2] = 0  # left padding
    completion = torch.randint(3, 100, (4, 6), generator=g)
    return prompt, prompt_mask, completion, torch.ones_like(completion)


def logp(model):
    return completion_logprobs(model, *batch()).logp


def test_the_reference_is_the_base_with_adapters_off_and_copies_nothing():
    base = tiny_base()
    frozen = frozen_copy(base)  # what a full fine-tuning run loads as its reference
    policy = trained_adapters(base)
    reference = lora.AdaptersOff(policy)
    assert torch.equal(logp(reference), logp(frozen))
    assert (logp(policy) - logp(frozen)).abs().max() > 1e-2  # the adapters do change the policy
    assert reference.state_dict() == {}  # no weights of its own
    policy.train()
    reference(input_ids=batch()[0])  # transformers' forward, as the lean path does not
    assert policy.training  # switched to eval for the reference pass only, then back


def hf_logits(model):
    prompt, prompt_mask, completion, completion_mask = batch()
    ids, mask = torch.cat([prompt, completion], 1), torch.cat([prompt_mask, completion_mask], 1)
    logits = model(input_ids=ids, attention_mask=mask,
                   position_ids=(mask.cumsum(1) - 1).clamp(min=0)).logits
    return logits[:, prompt.shape[1] - 1:-1]


@pytest.mark.parametrize("layout", ["packed", "shared"])
def test_the_lean_path_adds_the_adapters_as_peft_does(layout):
    """Logits and gradients of the lean path (each projection read as W + scale * B @ A)
    against peft's own forward (W x + scale * B (A x)); the reference with the adapters off."""
    base = tiny_base()
    frozen = frozen_copy(base)
    policy = trained_adapters(base)
    assert fast_llama.supports(policy) and fast_llama.supports(lora.AdaptersOff(policy))

    def lean(model):
        return fast_llama.completion_logits(model, *batch(), layout=layout)

    assert torch.allclose(lean(policy), hf_logits(policy), atol=1e-5)
    assert torch.allclose(lean(lora.AdaptersOff(policy)), hf_logits(frozen), atol=1e-5)

    def gradients(logits):
        policy.zero_grad()
        torch.log_softmax(logits, -1)[..., 5].sum().backward()
        return {n: p.grad.clone() for n, p in policy.named_parameters() if p.requires_grad}

    by_lean, by_peft = gradients(lean(policy)), gradients(hf_logits(policy))
    assert by_lean.keys() == by_peft.keys() and any("lora_A" in n for n in by_lean)
    for name in by_lean:  # A and B both learn, as under peft
        assert torch.allclose(by_lean[name], by_peft[name], atol=1e-4), name


def test_adapters_the_lean_path_cannot_reproduce_take_transformers_path():
    with_dropout = lora.add_adapters(tiny_base(), LoraConfig(rank=4, dropout=0.1))
    assert not fast_llama.supports(with_dropout)  # its dropout acts on A's input only


def test_merged_weights_are_the_adapted_model_under_the_base_names():
    base = tiny_base()
    plain = copy.deepcopy(base)
    policy = trained_adapters(base)
    merged = dict(lora.hf_weights(policy))
    assert sorted(merged) == sorted(plain.state_dict())
    plain.load_state_dict(merged)
    assert torch.allclose(logp(plain), logp(policy), atol=1e-5)
    before = {n: p.clone() for n, p in policy.named_parameters()}
    list(lora.hf_weights(policy))
    # computed, not merged in place
    assert all(torch.equal(p, before[n]) for n, p in policy.named_parameters())


def test_a_peft_folder_round_trips_and_loads_as_the_merged_model(tmp_path):
    base_folder, adapters = tmp_path / "base", tmp_path / "adapters"
    tiny_base().save_pretrained(base_folder)
    policy = trained_adapters(load_policy(str(base_folder)))
    policy.save_pretrained(adapters, state_dict=policy.state_dict())  # as checkpoints save it
    assert lora.is_adapter_folder(adapters) and lora.adapter_base(adapters) == str(base_folder)
    assert not (adapters / "model.safetensors").exists()  # adapters only, no copy of the base
    resumed = lora.load_adapters(load_policy(str(base_folder)), adapters)
    assert torch.equal(logp(resumed), logp(policy))
    assert {n for n, p in resumed.named_parameters() if p.requires_grad} == \
        {n for n, p in policy.named_parameters() if p.requires_grad}
    merged = load_policy(str(adapters))  # evaluate.py and friends: the model it defines
    assert not lora.has_adapters(merged) and fast_llama.supports(merged)
    assert all(p.requires_grad for p in merged.parameters())  # trainable like any loaded model
    assert torch.allclose(logp(merged), logp(policy), atol=1e-5)


def test_a_lora_warm_up_trains_only_adapters_and_writes_them_merged_and_as_peft(tmp_path):
    from hybrid_rl.data.samples import Sample
    from hybrid_rl.models.loading import builtin_model_folder, load_tokenizer
    from hybrid_rl.models.warm_start import warm_start

    base_folder = builtin_model_folder(
        {"hidden_size": 32, "num_layers": 2, "num_heads": 2, "intermediate_size": 64,
         "max_position_embeddings": 64, "init_seed": 0}, tmp_path)
    settings = dict(cache_dir=tmp_path, key_parts={"task": "t"}, steps=3, batch_size=2,
                    learning_rate=0.05, lr_schedule="constant", weight_decay=0.0, seed=0,
                    log_every=1, log=lambda _: None)
    demos = [Sample("1+1=", "2", "t", "2"), Sample("2+2=", "4", "t", "4")]
    full = warm_start(base_folder, demos, **settings)
    adapted = warm_start(base_folder, demos, **settings, adapters=LoraConfig(rank=4, alpha=8.0))
    assert adapted != full  # the adapters' settings are part of the cache key
    peft_folder = adapted / lora.ADAPTER_SUBFOLDER
    assert lora.adapter_base(peft_folder) == str(base_folder)
    with_adapters = lora.load_adapters(load_policy(str(base_folder)), peft_folder)
    assert any(p.abs().sum() > 0 for n, p in with_adapters.named_parameters() if "lora_B" in n)
    ids = load_tokenizer(str(adapted))("1+1=2", return_tensors="pt")["input_ids"]
    merged, base = load_policy(str(adapted)), load_policy(str(base_folder))
    assert torch.allclose(merged(ids).logits, with_adapters(ids).logits, atol=1e-5)
    unchanged = {"model.embed_tokens.weight", "lm_head.weight", "model.norm.weight"}
    for name, weight in merged.state_dict().items():  # adapters on the blocks' linears only
        assert torch.equal(weight, base.state_dict()[name]) == (name in unchanged or
                                                                "layernorm" in name), name


def test_export_merged_writes_a_plain_model_from_a_moved_base(tmp_path):
    """scripts/export_merged.py: the PEFT folder's base moved (--base names where it is now)."""
    from transformers import AutoModelForCausalLM

    from hybrid_rl.models.tiny import build_char_tokenizer

    trained_on, moved, adapters = tmp_path / "base", tmp_path / "moved", tmp_path / "adapters"
    tiny_base().save_pretrained(trained_on)
    policy = trained_adapters(load_policy(str(trained_on)))
    policy.save_pretrained(adapters)
    trained_on.rename(moved)
    build_char_tokenizer().save_pretrained(moved)
    spec = importlib.util.spec_from_file_location("export_merged",
                                                  ROOT / "scripts" / "export_merged.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    with pytest.raises(ModelLoadError, match=str(trained_on)):  # the missing base is named
        script.export_merged(str(adapters), str(tmp_path / "lost"))
    script.export_merged(str(adapters), str(tmp_path / "merged"), base=str(moved))
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged")
    assert not (tmp_path / "merged" / lora.ADAPTER_CONFIG).exists()
    assert torch.allclose(logp(merged), logp(policy), atol=1e-5)


def test_a_bad_target_module_is_named():
    with pytest.raises(ValueError, match=r"model.lora.target_modules=\['no_such_proj'\]"):
        lora.add_adapters(tiny_base(), LoraConfig(target_modules=["no_such_proj"]))


# PPO: its actor is GRPO's policy, and its critic trains adapters (and its head) too
SETTINGS = [*TINY_OVERRIDES, "trainer=ppo", "model.lora.enabled=true", "model.lora.rank=4",
            "trainer.beta=0.04", "trainer.learning_rate=0.01", "trainer.max_steps=4",
            "checkpoint.every_steps=2", "eval.every_steps=0", "logging.tensorboard=false",
            # a reward random completions sometimes earn, so the adapters really train
            "task.rewards.correctness.verifier={_target_:watch_helpers.contains_seven}"]
TIMING = ("time", "time/step_s", "time/rollout_s", "time/update_s", "throughput/tokens_per_s")


@pytest.mark.slow
def test_a_killed_lora_ppo_run_resumes_exactly_from_its_peft_checkpoint(tmp_path):
    env = {**os.environ, "HYBRID_RL_CACHE": str(tmp_path / "cache"), "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": str(ROOT / "tests" / "helpers")}

    def command(run_dir, *extra):
        return [sys.executable, str(ROOT / "train.py"), *SETTINGS, f"hydra.run.dir={run_dir}",
                *extra]

    def metrics(run_dir):
        rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
        return [{k: v for k, v in r.items() if k not in TIMING} for r in rows]

    whole = subprocess.run(command(tmp_path / "whole"), cwd=ROOT, env=env, capture_output=True,
                           text=True, timeout=600)
    assert whole.returncode == 0, whole.stderr[-3000:]
    out = whole.stdout + whole.stderr
    assert "model.lora: training" in out and "the base with the LoRA adapters off" in out
    train_rows = [r for r in metrics(tmp_path / "whole") if "value_loss" in r]
    # the reference (the adapters off) is not the policy
    assert abs(train_rows[-1]["kl_per_token"]) > 1e-4
    assert "LoRA adapters and the head" in out and any(r["value_loss"] > 0 for r in train_rows)
    killed = tmp_path / "killed"
    kill_once_written(command(killed), env, killed / "checkpoints" / "step_000002")
    assert lora.is_adapter_folder(killed / "checkpoints" / "step_000002" / "policy")
    state = torch.load(killed / "checkpoints" / "step_000002" / "trainer_state.pt",
                       weights_only=False)
    critic = state["critic"]["weights"]  # the frozen trunk is rebuilt on resume
    assert critic and all("lora_" in name or name.startswith("head.") for name in critic)
    subprocess.run(command(killed, "checkpoint.resume=auto"), cwd=ROOT, env=env, check=True,
                   capture_output=True, timeout=600)
    assert metrics(killed) == metrics(tmp_path / "whole")
