"""The memory plan: parameter counts against real models, byte counts by hand, the script."""
import subprocess
import sys

import pytest
from helpers.runs import ROOT
from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

from hybrid_rl.runtime.memory_plan import Architecture, Sharding, Workload, plan

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
                    dtype="bfloat16", beta=0.04, gradient_checkpointing=False, vllm=True)
    one = plan(SMALL, work, Sharding("1 GPU"))
    assert one["parameters"] == one["gradients"] == one["reference"] == 680 * 2
    assert one["optimizer"] == 680 * 12  # two fp32 moments + an fp32 master copy of bf16 weights
    assert one["vllm_weights"] == 680 * 2  # vLLM's own copy, never sharded
    # k+v, layers, kv heads, head dim, tokens, sequences, bytes
    assert one["kv_cache"] == 2 * 1 * 1 * 4 * 10 * 3 * 2
    per_token_layer = 8 * (34 + 5 * 2 * 10 / 8)  # bytes at 16 bits
    assert one["activations"] == pytest.approx(2 * 10 * per_token_layer + 2 * 2 * 10 * 10 * 4)
    z3 = plan(SMALL, work, Sharding("4 GPUs ZeRO-3", 4, 3))
    assert (
        z3["parameters"] == z3["gradients"] == z3["reference"] == 680 * 2 / 4
        and z3["optimizer"] == 680 * 12 / 4
    )
    z2 = plan(SMALL, work, Sharding("4 GPUs ZeRO-2", 4, 2))
    assert z2["parameters"] == 680 * 2 and z2["gradients"] == 680 * 2 / 4
    off = plan(SMALL, work, Sharding("offload", 4, 3, offload_optimizer=True))
    assert off["optimizer"] == 0 and off["optimizer_cpu"] == 680 * 12 / 4
    assert off["total"] == pytest.approx(z3["total"] - 680 * 12 / 4)


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
                                    "llama-3.2-1b-instruct", "qwen2.5-7b-instruct"])
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
    assert [r.split("|")[1].strip() for r in rows] == ["1 GPU", "8 GPUs ZeRO-2", "8 GPUs ZeRO-3",
                                                       "8 GPUs ZeRO-3 + offload"]
    totals = [float(r.split("|")[9]) for r in rows]
    assert totals[0] > totals[1] > totals[2] > totals[3] > 0


def test_script_names_the_problem_for_an_unknown_model(tmp_path):
    proc = subprocess.run([sys.executable, "scripts/memory_plan.py", "model=hf",
                           f"model.path={tmp_path}"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "give a local folder with a config.json" in proc.stderr
