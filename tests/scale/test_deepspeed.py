"""DeepSpeed ZeRO and torchrun on CPU (gloo): several processes train exactly as one does, and
their checkpoints resume in a single plain process."""
import os
import subprocess
import sys

import pytest
import torch
from helpers.runs import ROOT, TINY_OVERRIDES, read_jsonl, run_entry

pytest.importorskip("deepspeed", reason="DeepSpeed is in the dev set-up (scripts/setup.sh --dev)")
pytestmark = pytest.mark.slow
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]


def torchrun(args, env=None, timeout=900):
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "DS_ACCELERATOR": "cpu", **(env or {})}
    return subprocess.run(
        [*TORCHRUN, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


CASES = [(0, "dapo"), (2, "dapo"), (3, "dapo"), (3, "grpo")]  # (ZeRO stage, loss type)


def test_two_processes_update_exactly_like_one():
    """Each rank updates on half the batch; the weights, gradient norm and (portable) optimizer
    state must equal one process's on the whole batch, two steps in a row, and a ZeRO engine
    loaded from a plain optimizer state must continue identically. Every case in the same two
    processes, one after the other."""
    proc = torchrun([str(ROOT / "tests" / "helpers" / "zero_equivalence.py"),
                     *[f"{stage}:{loss}" for stage, loss in CASES]])
    for stage, loss in CASES:
        assert f"EQUIVALENT stage {stage} {loss}" in proc.stdout, (
            proc.stdout[-3000:] + proc.stderr[-5000:])
    assert proc.returncode == 0


# A reward that about half of the random tiny model's completions earn, so every step takes a
# real gradient (the math verifier rewards none of its 4-character strings).
HALF_THE_TIME = ("task.rewards.correctness.verifier={_target_:watch_helpers.starts_with_letter}",)
HELPERS_ON_PATH = {"PYTHONPATH": str(ROOT / "tests" / "helpers")}


def test_torchrun_zero3_run_resumes_in_one_plain_process(tmp_path):
    cache, run_dir = tmp_path / "cache", tmp_path / "zero3"
    proc = torchrun([str(ROOT / "train.py"), *TINY_OVERRIDES, f"hydra.run.dir={run_dir}",
                     "deepspeed=zero3", *HALF_THE_TIME,
                     "trainer.beta=0.04", "trainer.max_steps=2", "checkpoint.every_steps=1"],
                    env={"HYBRID_RL_CACHE": str(cache), **HELPERS_ON_PATH})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    rows = read_jsonl(run_dir / "metrics.jsonl")
    train_rows = [r for r in rows if "loss" in r]
    assert [r["step"] for r in train_rows] == [1, 2]  # written once, by rank 0
    assert all(r["kl"] is not None and r["grad_norm"] > 0 for r in train_rows)
    ckpt = run_dir / "checkpoints" / "step_000002"
    assert (ckpt / "policy" / "model.safetensors").is_file()

    import torch
    from safetensors.torch import load_file

    state = torch.load(ckpt / "trainer_state.pt", weights_only=False)
    weights = load_file(ckpt / "policy" / "model.safetensors")
    assert state["world_size"] == 2
    # Full tensors, not one rank's shard: every moment has its parameter's shape.
    embed = weights["model.embed_tokens.weight"]
    assert state["optimizer"]["state"][0]["exp_avg"].shape == embed.shape and embed.shape[1] == 32
    assert float(state["optimizer"]["state"][0]["step"]) == 2.0

    resumed = tmp_path / "resumed"
    proc = run_entry("train.py", resumed, "trainer.beta=0.04", "trainer.max_steps=3",
                     *HALF_THE_TIME, f"checkpoint.resume={ckpt}", cache=cache, env=HELPERS_ON_PATH)
    assert "resumed from" in proc.stderr + proc.stdout
    assert [r["step"] for r in read_jsonl(resumed / "metrics.jsonl") if "loss" in r] == [3]


def test_two_process_run_stopped_and_resumed_continues_exactly(tmp_path):
    """Each process's own random generators are saved and given back: a 2-process run
    resumed from its step-1 checkpoint writes step 2 exactly as the run that went on (with
    rank 0's generators restored on both ranks, rank 1 would sample other completions). The
    run trains LoRA adapters under ZeRO-2: its checkpoint is a PEFT folder, the reference the
    base with the adapters off."""
    cache = {"HYBRID_RL_CACHE": str(tmp_path / "cache"), **HELPERS_ON_PATH}
    common = [str(ROOT / "train.py"), *TINY_OVERRIDES, "deepspeed=zero2", "trainer.max_steps=2",
              "rollout.temperature=1.5", "logging.tensorboard=false", "model.lora.enabled=true",
              "model.lora.rank=4", "trainer.beta=0.04", "trainer.learning_rate=0.01",
              "task.rewards.correctness.verifier={_target_:watch_helpers.contains_seven}"]
    straight = tmp_path / "straight"
    proc = torchrun([*common, f"hydra.run.dir={straight}", "checkpoint.every_steps=1"], env=cache)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    resumed = tmp_path / "resumed"
    proc = torchrun([*common, f"hydra.run.dir={resumed}",
                     f"checkpoint.resume={straight / 'checkpoints' / 'step_000001'}"], env=cache)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]

    def step_two(run):
        row = next(r for r in read_jsonl(run / "metrics.jsonl") if r["step"] == 2 and "loss" in r)
        return {k: v for k, v in row.items() if k != "time" and not k.startswith(("time/", "thr"))}

    assert step_two(resumed) == step_two(straight) and step_two(straight)["kl"] > 0
    assert (straight / "checkpoints" / "step_000001" / "policy" / "adapter_config.json").is_file()


def test_several_processes_without_deepspeed_fail_with_the_fix(tmp_path):
    proc = torchrun([str(ROOT / "train.py"), *TINY_OVERRIDES, f"hydra.run.dir={tmp_path / 'run'}"],
                    env={"HYBRID_RL_CACHE": str(tmp_path / "cache")}, timeout=300)
    assert proc.returncode != 0
    assert "several processes need DeepSpeed: add deepspeed=ddp" in proc.stdout + proc.stderr


def test_zero2_with_the_optimizer_offloaded_trains_and_resumes_plainly(tmp_path):
    """deepspeed.offload_optimizer: DeepSpeedCPUAdam steps the states in CPU memory (its C++
    extension is compiled on first use); the checkpoint is the same portable layout."""
    cache, run_dir = tmp_path / "cache", tmp_path / "offload"
    run_entry("train.py", run_dir, "deepspeed=zero2", "deepspeed.offload_optimizer=true",
              "trainer.max_steps=2", cache=cache, env={"DS_ACCELERATOR": "cpu"})
    rows = [r for r in read_jsonl(run_dir / "metrics.jsonl") if "loss" in r]
    assert [r["step"] for r in rows] == [1, 2]
    ckpt = run_dir / "checkpoints" / "step_000002"
    resumed = tmp_path / "resumed"
    proc = run_entry(
        "train.py", resumed, "trainer.max_steps=3", f"checkpoint.resume={ckpt}", cache=cache
    )
    assert "resumed from" in proc.stderr + proc.stdout


def test_torchrun_zero3_dpo_trains_and_resumes_in_one_plain_process(tmp_path):
    """dpo.py runs train.py's loop, DeepSpeed included: two ZeRO-3 processes (the reference
    sharded too) on offline pairs, then the checkpoint resumed in one plain process."""
    import json

    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"prompt": f"{a}+{b}=", "chosen": str(a + b),
                                         "rejected": "x"}) + "\n"
                             for a in range(1, 7) for b in range(1, 7)))
    offline = ["dpo.pairs=offline", "dpo.data.source=jsonl", f"dpo.data.path={pairs}"]
    cache, run_dir = tmp_path / "cache", tmp_path / "zero3"
    proc = torchrun([str(ROOT / "dpo.py"), *TINY_OVERRIDES, f"hydra.run.dir={run_dir}",
                     "deepspeed=zero3", *offline, "trainer.max_steps=2",
                     "checkpoint.every_steps=1"], env={"HYBRID_RL_CACHE": str(cache)})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    rows = [r for r in read_jsonl(run_dir / "metrics.jsonl") if "loss" in r]
    assert [r["step"] for r in rows] == [1, 2] and all(r["grad_norm"] > 0 for r in rows)
    resumed = tmp_path / "resumed"
    proc = run_entry("dpo.py", resumed, *offline, "trainer.max_steps=3",
                     f"checkpoint.resume={run_dir / 'checkpoints' / 'step_000002'}", cache=cache,
                     env=HELPERS_ON_PATH)
    assert "resumed from" in proc.stderr + proc.stdout
    assert [r["step"] for r in read_jsonl(resumed / "metrics.jsonl") if "loss" in r] == [3]


def test_torchrun_zero2_rejection_sampling_rounds_take_the_same_sft_steps_everywhere(tmp_path):
    """rejection_sampling.py under two ZeRO-2 processes: each keeps its own prompts' best, and
    every process takes as many SFT steps as the one that kept the most (a DeepSpeed step needs
    all of them), so the logged steps cover at least this process's kept answers."""
    run_dir = tmp_path / "zero2"
    verifier = "task.rewards.correctness.verifier={_target_:watch_helpers.starts_with_letter}"
    proc = torchrun([str(ROOT / "rejection_sampling.py"), *TINY_OVERRIDES, verifier,
                     f"hydra.run.dir={run_dir}", "deepspeed=zero2", "rejection.rounds=2",
                     "rejection.eval_every_rounds=0", "rejection.batch_size=1",
                     "trainer.num_generations=4", "logging.tensorboard=false"],
                    env={"HYBRID_RL_CACHE": str(tmp_path / "cache"),
                         "PYTHONPATH": str(ROOT / "tests" / "helpers")})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    rounds = [r for r in read_jsonl(run_dir / "metrics.jsonl") if "rejection/kept" in r]
    assert [r["step"] for r in rounds] == [1, 2]
    kept_rounds = [r for r in rounds if "sft_steps" in r]
    assert kept_rounds, "no round kept an answer on any process"
    assert all(r["sft_steps"] >= 2 * r["rejection/kept"] for r in kept_rounds)


def test_torchrun_zero3_ppo_shards_the_critic_and_resumes_in_one_plain_process(tmp_path):
    """trainer=ppo under two ZeRO-3 processes: the critic is a DeepSpeed engine of its own
    (sharded like the policy); its gathered weights and optimizer state resume in one plain
    process. Actor and critic train LoRA adapters over their sharded bases (the critic its head
    too), and the checkpoint gathers only what trains."""
    cache, run_dir = tmp_path / "cache", tmp_path / "zero3"
    ppo = ["trainer=ppo", "trainer.num_generations=4", "model.lora.enabled=true",
           "model.lora.rank=4", "trainer.learning_rate=0.01",
           "task.rewards.correctness.verifier={_target_:watch_helpers.contains_seven}",
           "trainer.max_steps=2", "logging.tensorboard=false"]
    proc = torchrun([str(ROOT / "train.py"), *TINY_OVERRIDES, *ppo, "deepspeed=zero3",
                     f"hydra.run.dir={run_dir}", "checkpoint.every_steps=1"],
                    env={"HYBRID_RL_CACHE": str(cache), **HELPERS_ON_PATH})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    rows = [r for r in read_jsonl(run_dir / "metrics.jsonl") if "value_loss" in r]
    assert [r["step"] for r in rows] == [1, 2] and all(r["ppo/minibatch_steps"] == 4 for r in rows)
    from hybrid_rl.models import lora
    from hybrid_rl.models.loading import load_policy

    adapters = run_dir / "checkpoints" / "step_000002" / "policy"  # gathered, not one shard
    trained = lora.load_adapters(load_policy(lora.adapter_base(adapters)), adapters)
    assert any(p.abs().sum() > 0 for n, p in trained.named_parameters() if "lora_B" in n)
    critic = torch.load(adapters.parent / "trainer_state.pt", weights_only=False)["critic"]
    assert all("lora_" in name or name.startswith("head.") for name in critic["weights"])
    resumed = tmp_path / "resumed"
    proc = run_entry("train.py", resumed, *ppo[:-2], "trainer.max_steps=3",
                     f"checkpoint.resume={run_dir / 'checkpoints' / 'step_000002'}", cache=cache,
                     env=HELPERS_ON_PATH)
    assert "resumed from" in proc.stderr + proc.stdout
    assert [r["step"] for r in read_jsonl(resumed / "metrics.jsonl") if "value_loss" in r] == [3]
