"""The memory plan: parameter counts against real models, byte counts by hand, the script."""
import subprocess
import sys

import pytest
from helpers.runs import ROOT
from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

from hybrid_rl.runtime.memory_plan import (
    GIB,
    Architecture,
    Sharding,
    Workload,
    format_plan,
    plan,
)

SMALL = Architecture(hidden=8, layers=1, heads=2, kv_heads=1, intermediate=16, vocab=10)


def test_parameter_count_by_hand_and_against_transformers():
    # embeddings 10*8 + layer (q 64, k 32, v 32, o 64, mlp 3*8*16, two norms 16) + final norm 8
    assert SMALL.num_parameters() == 80 + (64 + 32 + 32 + 64 + 384 + 16) + 8 == 680
    llama = LlamaForCausalLM(
        LlamaConfig(
            hidden_size=8,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=1,
            intermediate_size=16,
            vocab_size=10,
            tie_word_embeddings=True,
        )
    )
    assert sum(p.numel() for p in llama.parameters()) == 680
    qwen_cfg = dict(
        hidden_size=16, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        intermediate_size=32, vocab_size=50, tie_word_embeddings=False, model_type="qwen2",
    )
    qwen = Qwen2ForCausalLM(Qwen2Config(**{k: v for k, v in qwen_cfg.items() if k != "model_type"}))
    assert Architecture.from_hf_config(qwen_cfg).num_parameters() == sum(
        p.numel() for p in qwen.parameters()
    )


def test_bytes_per_category_by_hand():
    work = Workload(prompt_tokens=6, completion_tokens=4, micro_batch_size=2, rollout_sequences=3,
                    dtype="bfloat16", beta=0.04, gradient_checkpointing=False, vllm=True,
                    gpu_gib=1.0, vllm_utilization=0.25)
    one = plan(SMALL, work, Sharding("1 GPU"))
    assert one["parameters"] == one["gradients"] == one["reference"] == 680 * 2
    assert one["optimizer"] == 680 * 12  # two fp32 moments + an fp32 master copy of bf16 weights
    assert one["buffers"] == 0
    # k+v, layers, kv heads, head dim, tokens, sequences, bytes; plus vLLM's own weights
    assert one["vllm_needs"] == 2 * 1 * 1 * 4 * 10 * 3 * 2 + 680 * 2
    assert one["vllm"] == 0.25 * GIB  # what vLLM reserves, whatever it needs
    per_token_layer = 8 * (34 + 5 * 2 * 10 / 8)  # bytes at 16 bits
    # logits peak: bf16 logits + fp32 copy + log-softmax + entropy = 2 + 12 bytes per value
    assert one["activations"] == pytest.approx(2 * 10 * per_token_layer + 2 * 10 * 10 * 14)
    z3 = plan(SMALL, work, Sharding("4 GPUs ZeRO-3", 4, 3))
    assert z3["parameters"] == z3["reference"] == 680 * 2 / 4 and z3["optimizer"] == 680 * 12 / 4
    assert z3["gradients"] == 680 * 2 / 4 + 680 * 4 / 4  # bf16 shard + the fp32 partition
    assert z3["buffers"] == 680 * 2 + 680 * 2  # the whole model gathered, and a reduce bucket
    z2 = plan(SMALL, work, Sharding("4 GPUs ZeRO-2", 4, 2))
    assert z2["parameters"] == 680 * 2 and z2["gradients"] == 680 * 2 / 4 + 680 * 4 / 4
    assert z2["buffers"] == 2 * 680 * 2  # reduce and all-gather buckets (the model is small)
    off = plan(SMALL, work, Sharding("offload", 4, 3, offload_optimizer=True))
    assert off["optimizer"] == 0 and off["optimizer_cpu"] == 680 * 12 / 4
    assert off["total"] == pytest.approx(z3["total"] - 680 * 12 / 4)


def test_lora_counts_only_the_adapters_and_drops_the_reference():
    """Rank-2 adapters on the small model, counted by hand and by peft itself."""
    from hybrid_rl.config.model import LoraConfig
    from hybrid_rl.models import lora

    # (fan_in + fan_out) of q 8+8, k and v 8+4, o 8+8, gate and up 8+16, down 16+8 = 128
    assert SMALL.lora_parameters(2) == 2 * 128
    model = LlamaForCausalLM(LlamaConfig(vocab_size=10, hidden_size=8, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=1,
                                         intermediate_size=16, tie_word_embeddings=True))
    trained, _ = lora.trainable_share(lora.add_adapters(model, LoraConfig(rank=2)))
    assert trained == 256
    work = Workload(prompt_tokens=6, completion_tokens=4, micro_batch_size=2, rollout_sequences=3,
                    dtype="bfloat16", beta=0.04, vllm=False, lora_rank=2)
    one = plan(SMALL, work, Sharding("1 GPU"))
    assert one["parameters"] == (680 + 256) * 2 and one["gradients"] == 256 * 2
    assert one["optimizer"] == 256 * 12 and one["reference"] == 0  # the base, adapters off
    z2 = plan(SMALL, work, Sharding("4 GPUs ZeRO-2", 4, 2))
    assert z2["gradients"] == 256 * 2 / 4 + 256 * 4 / 4 and z2["buffers"] == 2 * 256 * 2
    full = plan(SMALL, Workload(6, 4, 2, 3, "bfloat16", beta=0.04, vllm=False), Sharding("1"))
    assert one["activations"] == full["activations"]  # backward still runs through the base


def test_every_process_samples_its_own_prompts_and_vllm_that_does_not_fit_is_named():
    """prompts_per_step is per process, so no row divides the sampled sequences by the GPU
    count; a KV cache beyond vLLM's reserved share is reported with the setting to raise."""
    big = Architecture(hidden=1024, layers=24, heads=16, kv_heads=16, intermediate=4096,
                       vocab=32000)
    work = Workload(512, 512, 1, 512, "bfloat16", gpu_gib=24.0, vllm_utilization=0.1)
    kv = 2 * 24 * 16 * 64 * 1024 * 512 * 2
    assert plan(big, work, Sharding("8", 8, 3))["vllm_needs"] == kv + big.num_parameters() * 2
    table = format_plan(big, work, 8)
    assert "vLLM needs" in table and "raise rollout.gpu_memory_utilization to at least" in table


def test_checkpointing_keeps_only_layer_inputs():
    work = Workload(100, 100, 4, 8, "float32", gradient_checkpointing=False, vllm=False)
    deep = Architecture(256, 24, 8, 8, 1024, 1000)
    full = plan(deep, work, Sharding("1"))["activations"]
    saved = plan(
        deep,
        Workload(100, 100, 4, 8, "float32", gradient_checkpointing=True, vllm=False),
        Sharding("1"),
    )
    assert saved["activations"] < full / 5


@pytest.mark.parametrize("preset", ["qwen2.5-0.5b-instruct", "qwen2.5-1.5b-instruct",
                                    "qwen2.5-math-1.5b",
                                    "llama-3.2-1b-instruct", "qwen2.5-7b-instruct",
                                    "qwen2.5-7b-instruct-lora"])
def test_script_prints_a_plan_for_every_preset(preset):
    proc = subprocess.run(
        [sys.executable, "scripts/memory_plan.py", f"preset={preset}", "--gpus", "8"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| ") and "GPU" in line]
    assert [r.split("|")[1].strip() for r in rows] == [
        "1 GPU ZeRO-2", "8 GPUs ZeRO-2", "8 GPUs ZeRO-3", "8 GPUs ZeRO-3 + offload"]
    totals = [float(r.split("|")[9]) for r in rows]
    if preset.endswith("-lora"):  # sharding a few adapters saves little; ZeRO-3's gather costs
        assert totals[0] > totals[1] > 0 and totals[2] > totals[1]
    else:
        assert totals[0] > totals[1] > totals[3] > 0 and totals[2] > totals[3]


@pytest.mark.parametrize("preset, gpus, gib", [
    ("qwen2.5-0.5b-instruct", 1, 24), ("llama-3.2-1b-instruct", 1, 80),
    ("llama-3.2-1b-instruct", 2, 40), ("qwen2.5-1.5b-instruct", 1, 80),
    ("qwen2.5-1.5b-instruct", 4, 40), ("qwen2.5-math-1.5b", 1, 80), ("qwen2.5-7b-instruct", 8, 80),
    ("qwen2.5-7b-instruct-lora", 1, 80),
])
def test_every_preset_fits_the_gpus_the_readme_promises(preset, gpus, gib):
    """With 1.5 GiB to spare for the CUDA context and fragmentation, and vLLM's share covering
    its weights and KV cache (the README's preset table states these GPUs)."""
    proc = subprocess.run(
        [sys.executable, "scripts/memory_plan.py", f"preset={preset}", "--gpus", str(gpus),
         "--gpu-gib", str(gib)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    rows = [r for r in proc.stdout.splitlines() if r.startswith("| ") and "GPU" in r]
    best = min(float(r.split("|")[9]) for r in rows if r.split("|")[1].strip().startswith(
        f"{gpus} GPU") and "offload" not in r)
    assert best <= gib - 1.5, proc.stdout
    assert "vLLM needs" not in proc.stdout


def test_script_names_the_problem_for_an_unknown_model(tmp_path):
    proc = subprocess.run([sys.executable, "scripts/memory_plan.py", "model=hf",
                           f"model.path={tmp_path}"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "give a local folder with a config.json" in proc.stderr
