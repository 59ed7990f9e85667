"""The real entry points with tiny settings: train.py for 2 steps, resume, sft.py."""
import json
import math
import os
import subprocess
import sys

import pytest
import torch
from helpers.runs import ROOT, TINY_OVERRIDES, read_jsonl, run_entry


@pytest.fixture(scope="module")
def two_step_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("smoke")
    run_dir = base / "run"
    proc = run_entry("train.py", run_dir, "trainer.max_steps=2", "checkpoint.every_steps=1",
                     "checkpoint.keep_last=5", cache=base / "cache")
    return run_dir, base / "cache", proc


def test_two_steps_write_metrics_samples_checkpoint_and_plot(two_step_run):
    run_dir, _, proc = two_step_run
    rows = read_jsonl(run_dir / "metrics.jsonl")
    train_rows = [r for r in rows if "loss" in r]
    assert [r["step"] for r in train_rows] == [1, 2]
    for key in (
        "reward/correctness/mean",
        "reward/total/std",
        "accuracy",
        "clip_fraction/low",
        "entropy",
        "completion/mean_length",
        "throughput/tokens_per_s",
        "time/step_s",
        "grad_norm",
        "lr",
    ):
        assert key in train_rows[0], key
    evals = [r for r in rows if "eval/accuracy" in r]
    assert [r["step"] for r in evals] == [0, 1, 2]  # before training, every step, at the end
    samples = read_jsonl(run_dir / "samples.jsonl")
    assert {s["step"] for s in samples} == {1, 2} and {"prompt", "completion", "reward",
                                                       "advantage"} <= set(samples[0])
    assert (run_dir / "checkpoints" / "step_000002" / "policy" / "model.safetensors").is_file()
    assert (run_dir / "checkpoints" / "step_000001" / "manifest.json").is_file()
    assert (run_dir / "training_curves.png").stat().st_size > 1000
    assert (run_dir / "config.yaml").is_file() and list((run_dir / "tensorboard").glob("events.*"))
    assert "held-out accuracy: start" in proc.stderr + proc.stdout
    assert "[sft]" in proc.stderr + proc.stdout  # the built-in model was warmed up first


def test_the_best_evaluation_is_kept_and_named_in_the_summary(two_step_run):
    """checkpoints/best holds the policy of the first evaluation with the highest accuracy,
    with its step and accuracy; the last line names it and the command to evaluate it."""
    run_dir, _, proc = two_step_run
    evals = [r for r in read_jsonl(run_dir / "metrics.jsonl") if "eval/accuracy" in r]
    top = max(r["eval/accuracy"] for r in evals)
    best_step = next(r["step"] for r in evals if r["eval/accuracy"] == top)
    best = run_dir / "checkpoints" / "best"
    info = json.loads((best / "best.json").read_text())
    assert info == {"step": best_step, "accuracy": top, "num_problems": 8}
    assert (best / "policy" / "model.safetensors").is_file()
    assert "best.json" in json.loads((best / "manifest.json").read_text())
    for r in evals:  # the 95% interval of every evaluation brackets its accuracy
        assert r["eval/accuracy_ci95_low"] <= r["eval/accuracy"] <= r["eval/accuracy_ci95_high"]
    out = proc.stderr + proc.stdout
    assert f"best {top:.3f}" in out and f"at step {best_step}" in out
    assert (f"best checkpoint {best}. Next: python evaluate.py task=math model=tiny "
            f"evaluate.checkpoint={best}") in out
    assert "(8 problems, 95% intervals)" in out


def test_resume_continues_at_the_next_step(two_step_run, tmp_path):
    run_dir, cache, _ = two_step_run
    resumed = tmp_path / "resumed"
    ckpt = run_dir / "checkpoints" / "step_000001"
    proc = run_entry(
        "train.py", resumed, "trainer.max_steps=3", f"checkpoint.resume={ckpt}", cache=cache
    )
    steps = [r["step"] for r in read_jsonl(resumed / "metrics.jsonl") if "loss" in r]
    assert steps == [2, 3]
    assert f"resumed from {ckpt} at step 1" in proc.stderr + proc.stdout
    assert "reusing cached warm-up model" in proc.stderr + proc.stdout
    # The best so far carries over: the resumed run's best is the saved one unless a later
    # evaluation beat it strictly (then the first such one)
    saved = torch.load(ckpt / "trainer_state.pt", weights_only=False)["best"]
    evals = [r for r in read_jsonl(resumed / "metrics.jsonl") if "eval/accuracy" in r]
    expected = saved
    for r in evals:
        if r["eval/accuracy"] > expected["accuracy"]:
            expected = {"step": r["step"], "accuracy": r["eval/accuracy"]}
    final = resumed / "checkpoints" / "step_000003" / "trainer_state.pt"
    best = torch.load(final, weights_only=False)["best"]
    assert (best["step"], best["accuracy"]) == (expected["step"], expected["accuracy"])
    assert f"at step {expected['step']} -> final" in proc.stderr + proc.stdout


def test_resume_auto_in_the_same_folder_keeps_one_line_per_step(two_step_run, tmp_path):
    run_dir, cache, _ = two_step_run
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    run_entry("train.py", copy, "trainer.max_steps=3", "checkpoint.resume=auto", cache=cache)
    steps = [r["step"] for r in read_jsonl(copy / "metrics.jsonl") if "loss" in r]
    assert steps == [1, 2, 3]


@pytest.mark.parametrize("override, message", [
    ("trainer.num_generations=1", "trainer.num_generations: group advantages need at least 2"),
    ("task.rewards.correctness.verifier=nope", "task.rewards.correctness.verifier: "
                                               "unknown verifier 'nope'"),
])
def test_bad_config_fails_before_any_work(tmp_path, override, message):
    proc = run_entry("train.py", tmp_path / "bad", override, cache=tmp_path, check=False)
    assert proc.returncode != 0 and message in proc.stderr
    assert not (tmp_path / "builtin").exists()  # failed before creating any model


def test_sft_entry_point_exports_a_model_trained_through_lora_adapters(tmp_path):
    proc = run_entry("sft.py", tmp_path / "sft", "model.lora.enabled=true", "model.lora.rank=4",
                     "model.lora.warmup=true", cache=tmp_path / "cache")
    out = tmp_path / "sft" / "model"
    assert (out / "config.json").is_file()
    assert (out / "lora_adapter" / "adapter_config.json").is_file()
    assert "(LoRA adapters of rank 4)" in proc.stderr + proc.stdout
    assert "held-out accuracy" in proc.stderr + proc.stdout


def test_multirun_sweeps_variants_with_kl_reference(tmp_path):
    """`-m` runs one job per value; the presets run with a KL reference and mu = 2."""
    env = {**os.environ, "HYBRID_RL_CACHE": str(tmp_path / "cache")}
    cmd = [
        sys.executable, str(ROOT / "train.py"), "-m", *TINY_OVERRIDES, "trainer=dapo,dr_grpo",
        "trainer.beta=0.04", "trainer.mu=2", "trainer.max_steps=1", "checkpoint.save_final=false",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
    ]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    steps = [
        next(
            r
            for r in read_jsonl(tmp_path / "sweep" / job / "metrics.jsonl")
            if r["step"] == 1 and "reward/total/mean" in r
        )
        for job in ("0", "1")
    ]
    # dapo's dynamic sampling updates only on groups with signal: either it found some (an
    # update, and not every group was equal) or it found none (no update, all groups equal).
    dapo = steps[0]
    assert ("loss" in dapo) == (dapo["groups/all_equal_fraction"] < 1.0), dapo
    # dr_grpo always updates, with its KL reference loaded (the KL's value after a step is
    # checked in test_sampling_trainer.py; here every group may be equal, a zero gradient)
    assert "kl" in steps[1] and "loss" in steps[1]
    assert "loss_type: dr_grpo" in (tmp_path / "sweep" / "1" / "config.yaml").read_text()
    assert "dynamic_sampling: fill" in (tmp_path / "sweep" / "0" / "config.yaml").read_text()


def test_estimator_presets_train_end_to_end(tmp_path):
    """trainer=rloo, reinforce_pp (the KL as a reward: a reference loaded, no KL in the loss)
    and gspo (sequence ratios over two passes) each take a real step, with overlong shaping
    weighed in as a signal (a 4-token limit: its buffer is 1 token, so a completion that
    reaches the limit gets -1, every truncated one among them)."""
    env = {**os.environ, "HYBRID_RL_CACHE": str(tmp_path / "cache"),
           "PYTHONPATH": str(ROOT / "tests" / "helpers")}  # a reward about half earn
    cmd = [sys.executable, str(ROOT / "train.py"), "-m", *TINY_OVERRIDES,
           "task.rewards.correctness.verifier={_target_:watch_helpers.starts_with_letter}",
           "+task.rewards.overlong={verifier:overlong,weight:0.5}", "trainer.num_generations=4",
           "trainer=rloo,reinforce_pp,gspo", "trainer.max_steps=1",
           "eval.every_steps=0",
           "checkpoint.save_final=false", "logging.tensorboard=false",
           f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    steps = [next(r for r in read_jsonl(tmp_path / "sweep" / job / "metrics.jsonl")
                  if "loss" in r) for job in ("0", "1", "2")]
    assert all(math.isfinite(r["loss"]) and r["grad_norm"] > 0 for r in steps)
    assert all(-1 <= r["reward/overlong/mean"] <= -r["completion/truncated_fraction"]
               for r in steps)
    log = (tmp_path / "sweep" / "1" / "train.log").read_text()
    assert "kl" not in steps[1] and "reference: the frozen starting model" in log
    assert "importance_level: sequence" in (tmp_path / "sweep" / "2" / "config.yaml").read_text()


def test_hf_folder_model_trains(two_step_run, tmp_path):
    """Any Hugging Face folder loads through model=hf: here, a checkpoint's policy folder."""
    run_dir, cache, _ = two_step_run
    policy = run_dir / "checkpoints" / "step_000002" / "policy"
    run_entry("train.py", tmp_path / "hf", "model=hf", f"model.path={policy}",
              "model.chat_template=false", "trainer.max_steps=1", cache=cache)
    assert any("loss" in r for r in read_jsonl(tmp_path / "hf" / "metrics.jsonl"))


def test_bad_model_path_is_named(tmp_path):
    proc = run_entry("train.py", tmp_path / "bad", "model=hf", f"model.path={tmp_path}/nope",
                     cache=tmp_path, check=False)
    assert proc.returncode != 0 and f"model path not found: {tmp_path}/nope" in proc.stderr


def test_periodic_checkpoint_on_the_last_step_is_kept_without_save_final(two_step_run, tmp_path):
    _, cache, _ = two_step_run
    run_entry("train.py", tmp_path / "r", "trainer.max_steps=2", "checkpoint.every_steps=2",
              "checkpoint.save_final=false", "eval.every_steps=0", cache=cache)
    checkpoints = sorted(p.name for p in (tmp_path / "r" / "checkpoints").iterdir())
    assert checkpoints == ["best", "step_000002"]  # best: the evaluation before training
