"""rollout.async_steps: the weight slots by hand, the config's refusals, staleness bounded by N
(and the log-prob ratio exactly 1 when N=0), a worker SIGKILLed mid-run (restarted, the run
unchanged), a trainer SIGKILLed (its worker goes too), exact resume with the batches in
flight, and a mixture under torchrun with ZeRO-3."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers.runs import (
    ROOT,
    TINY_OVERRIDES,
    config_error,
    kill_once_written,
    processes_gone,
    read_jsonl,
    run_entry,
)

from hybrid_rl.rollout.async_worker import (
    WeightSlots,
    request_seed,
    standalone_environment,
    trainer_gpu,
)

# A reward about half of the random tiny model's completions earn: every step takes a real
# gradient step, so the weights move and a stale batch's ratio leaves 1.
HALF_THE_TIME = ["task.rewards.correctness.verifier={_target_:watch_helpers.starts_with_letter}",
                 "trainer.num_generations=4", "trainer.learning_rate=0.05",
                 "eval.every_steps=0", "logging.tensorboard=false", "logging.samples_every_steps=0"]
HELPERS_ON_PATH = {"PYTHONPATH": str(ROOT / "tests" / "helpers")}


def train(run_dir, *extra, cache, check=True):
    return run_entry("train.py", run_dir, *HALF_THE_TIME, *extra, cache=cache, check=check,
                     env=HELPERS_ON_PATH)


def steps(run_dir):
    return [r for r in read_jsonl(Path(run_dir) / "metrics.jsonl") if "loss" in r]


def without_timing(rows):
    return [{k: v for k, v in r.items() if not k.startswith(("time", "throughput"))}
            for r in rows]


# ------------------------------------------------------------------ weight slots ----

def test_weight_slots_keep_each_version_in_its_slot_and_refuse_the_wrong_one():
    model = torch.nn.Linear(3, 2)
    params = list(model.named_parameters())
    slots = WeightSlots.create(params, count=2)
    for version in (0, 1):
        slots.publish(version, [(n, torch.full_like(p, float(version + 1))) for n, p in params])
    target = torch.nn.Linear(3, 2)
    slots.load_into(target, 0)
    assert torch.equal(target.weight, torch.ones(2, 3)) and torch.equal(target.bias, torch.ones(2))
    slots.load_into(target, 1)
    assert torch.equal(target.weight, torch.full((2, 3), 2.0))
    assert slots.overwritten_by(2) == 0
    slots.publish(2, [(n, torch.full_like(p, 3.0)) for n, p in params])  # into version 0's slot
    with pytest.raises(RuntimeError, match="weight version 0 is not in its slot"):
        slots.load_into(target, 0)
    with pytest.raises(RuntimeError, match="has no parameter 'weight'"):
        slots.load_into(torch.nn.Sequential(torch.nn.Linear(3, 2)), 2)


def test_a_request_seed_depends_on_the_process_seed_and_the_step_only():
    assert request_seed(0, 5) == request_seed(0, 5) == 5
    assert len({request_seed(s, t) for s in (0, 1) for t in (1, 2)}) == 4


def test_the_worker_is_a_single_process_on_its_trainers_gpu(monkeypatch):
    """Under torchrun the worker must not look like a rank (vLLM would join the trainers'
    process group), and it sees only its trainer's GPU."""
    torchrun = {"RANK": "1", "LOCAL_RANK": "1", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1",
                "MASTER_PORT": "29500", "PATH": "/bin", "CUDA_VISIBLE_DEVICES": "2,3"}
    assert standalone_environment(torchrun, "3") == {"PATH": "/bin", "CUDA_VISIBLE_DEVICES": "3"}
    assert standalone_environment(torchrun, None)["CUDA_VISIBLE_DEVICES"] == "2,3"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    assert trainer_gpu(1) == "3" and trainer_gpu(None) is None
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert trainer_gpu(1) == "1"


@pytest.mark.parametrize("override, named", [
    (["rollout.async_steps=-1"], "rollout.async_steps: must be >= 0"),
    (["rollout.async_steps=1", "trainer.dynamic_sampling=fill"],
     "rollout.async_steps: dynamic_sampling=fill"),
    (["rollout.worker_threads=0"], "rollout.worker_threads: must be > 0"),
])
def test_bad_async_settings_are_named(override, named):
    assert named in config_error("config", *override)


def test_dpo_with_offline_pairs_refuses_asynchronous_rollouts():
    assert "dpo.pairs=offline samples nothing" in config_error(
        "dpo", "rollout.async_steps=1", "dpo.pairs=offline")


# ------------------------------------------------------------------ real runs ----

@pytest.fixture(scope="module")
def one_step_ahead(tmp_path_factory):
    """A 4-step run with async_steps=1 (the reference for the kill and restart tests)."""
    base = tmp_path_factory.mktemp("async")
    train(base / "run", "rollout.async_steps=1", "trainer.max_steps=4", cache=base / "cache")
    return base


def test_staleness_is_bounded_by_async_steps_and_the_stale_ratio_leaves_one(one_step_ahead):
    rows = steps(one_step_ahead / "run")
    assert [r["rollout/staleness"] for r in rows] == [0, 1, 1, 1]
    assert [r["rollout/weight_version"] for r in rows] == [0, 0, 1, 2]
    assert abs(rows[0]["rollout/is_weight_mean"] - 1) < 1e-5  # the same weights sampled it
    # later batches come from the weights one update before: the ratio against them moves
    assert max(abs(r["rollout/is_weight_mean"] - 1) for r in rows[1:]) > 1e-3
    assert all(r["rollout/worker_restarts"] == 0 for r in rows)


def test_synchronous_runs_have_staleness_zero_and_a_ratio_of_exactly_one(tmp_path):
    train(tmp_path / "run", "trainer.max_steps=2", cache=tmp_path / "cache")
    rows = steps(tmp_path / "run")
    assert [r["rollout/staleness"] for r in rows] == [0, 0]
    assert all(r["rollout/is_weight_mean"] == 1.0 and r["rollout/is_weight_max"] == 1.0
               for r in rows)
    assert not (tmp_path / "run" / "rollout_worker.rank0.pid").exists()


@pytest.mark.parametrize("script, extra", [
    ("train.py", ["trainer=ppo", "trainer.critic.warmup_steps=0"]),  # old log-probs: the sampler's
    ("train.py", ["model.lora.enabled=true"]),  # only the adapters travel
    ("dpo.py", []),  # online pairs
    ("rejection_sampling.py", ["rejection.rounds=2"]),
])
def test_the_recipes_that_share_the_loop_train_asynchronously(tmp_path, script, extra):
    run_entry(script, tmp_path / "run", *HALF_THE_TIME, *extra, "rollout.async_steps=1",
              "trainer.max_steps=2", "checkpoint.save_final=false", cache=tmp_path / "cache",
              env=HELPERS_ON_PATH)
    rows = [r for r in read_jsonl(tmp_path / "run" / "metrics.jsonl") if "rollout/staleness" in r]
    assert [r["rollout/staleness"] for r in rows] == [0, 1]


def wait_for(path: Path, proc, timeout_s=120) -> int:
    deadline = time.time() + timeout_s
    while not path.exists() or not path.read_text():
        assert proc.poll() is None and time.time() < deadline, "no worker started"
        time.sleep(0.01)
    return int(path.read_text())


def train_command(run_dir, *extra):
    return [sys.executable, str(ROOT / "train.py"), *TINY_OVERRIDES, *HALF_THE_TIME, *extra,
            f"hydra.run.dir={run_dir}"]


def env_for(cache):
    return {**os.environ, "HYBRID_RL_CACHE": str(cache), "PYTHONUNBUFFERED": "1",
            **HELPERS_ON_PATH}


def test_a_worker_killed_mid_run_is_restarted_and_the_run_is_unchanged(one_step_ahead, tmp_path):
    run_dir = tmp_path / "run"
    proc = subprocess.Popen(train_command(run_dir, "rollout.async_steps=1", "trainer.max_steps=4"),
                            cwd=ROOT, env=env_for(one_step_ahead / "cache"),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    worker = wait_for(run_dir / "rollout_worker.rank0.pid", proc)
    os.kill(worker, signal.SIGKILL)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out[-3000:]
    assert f"the rollout worker (pid {worker}) died (exit code -9); restarting it (restart 1" \
        in out
    rows = steps(run_dir)
    assert [r["rollout/worker_restarts"] for r in rows] == [1, 1, 1, 1]
    # each batch depends only on its prompts, weight version and seed: nothing else changed
    same = [{k: v for k, v in r.items() if k != "rollout/worker_restarts"}
            for r in without_timing(rows)]
    assert same == [{k: v for k, v in r.items() if k != "rollout/worker_restarts"}
                    for r in without_timing(steps(one_step_ahead / "run"))]


def test_a_silent_worker_is_killed_and_too_many_restarts_stop_the_run(one_step_ahead, tmp_path):
    """A worker silent past rollout.worker_timeout_s is killed and restarted; more restarts
    than rollout.max_worker_restarts stop the run with the reason (here every worker is
    'silent': none can start in 10 ms)."""
    proc = train(tmp_path / "run", "rollout.async_steps=1", "trainer.max_steps=2",
                 "rollout.worker_timeout_s=0.01", "rollout.max_worker_restarts=1",
                 cache=one_step_ahead / "cache", check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "sent nothing for 0.01 s (rollout.worker_timeout_s); killed; restarting it (restart 1" \
        in out
    assert "it has died 2 times, more than rollout.max_worker_restarts=1" in out


def test_a_killed_trainer_takes_its_worker_with_it(one_step_ahead, tmp_path):
    run_dir = tmp_path / "run"
    proc = subprocess.Popen(train_command(run_dir, "rollout.async_steps=1",
                                          "trainer.max_steps=1000"),
                            cwd=ROOT, env=env_for(one_step_ahead / "cache"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    worker = wait_for(run_dir / "rollout_worker.rank0.pid", proc)
    time.sleep(3)  # into the steps
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert processes_gone([worker], timeout_s=10) == []


@pytest.mark.slow
def test_sigkill_resume_with_batches_in_flight_continues_exactly(tmp_path):
    """async_steps=2: the checkpoint keeps the batches sampled for the two steps after it; the
    resumed run takes them and goes on exactly as the uninterrupted one. Resumed with
    async_steps=1 instead, it samples those steps' prompts again (and says so)."""
    extra = ["rollout.async_steps=2", "trainer.max_steps=6", "checkpoint.every_steps=2",
             "checkpoint.keep_last=10"]
    cache = tmp_path / "cache"
    train(tmp_path / "whole", *extra, cache=cache)
    whole = steps(tmp_path / "whole")
    assert [r["rollout/staleness"] for r in whole] == [0, 1, 2, 2, 2, 2]

    killed = tmp_path / "killed"
    kill_once_written(train_command(killed, *extra), env_for(cache),
                      killed / "checkpoints" / "step_000004")
    assert len(steps(killed)) < 6, "the kill came too late"
    train(killed, *extra, "checkpoint.resume=auto", cache=cache)
    assert without_timing(steps(killed)) == without_timing(whole)

    other = tmp_path / "other"
    proc = train(other, *[e for e in extra if "async" not in e], "rollout.async_steps=1",
                 f"checkpoint.resume={tmp_path / 'whole' / 'checkpoints' / 'step_000004'}",
                 cache=cache)
    assert "this run samples those steps' prompts again" in proc.stdout + proc.stderr
    # from the checkpoint's weights: step 5's batch is as fresh as can be, step 6's one behind
    assert [r["rollout/staleness"] for r in steps(other)] == [0, 1]


@pytest.mark.slow
def test_a_mixture_under_torchrun_zero3_trains_asynchronously_and_resumes_in_one_process(
        tmp_path):
    """Every reward signal of the default mixture (verifiers, the learned preference, the
    hacking watch on explain_hybrid), two processes each with its own worker, ZeRO-3 gathering
    the weights it publishes (every completion scored by the gated preference too, so each
    step logs it); then resumed in one plain process (another process count: the
    in-flight batches are sampled again)."""
    pytest.importorskip("deepspeed")
    from test_mixture import MIX_TINY

    run_dir, cache = tmp_path / "zero3", tmp_path / "cache"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "DS_ACCELERATOR": "cpu",
           "HYBRID_RL_CACHE": str(cache)}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         str(ROOT / "train.py"), *MIX_TINY, "deepspeed=zero3", "rollout.async_steps=1",
         "trainer.max_steps=2", "checkpoint.every_steps=2", "eval.every_steps=0",
         "reward.gate_failures_scored=1",
         f"hydra.run.dir={run_dir}"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    rows = steps(run_dir)
    assert [r["rollout/staleness"] for r in rows] == [0, 1]
    assert all("task/explain_hybrid/preference" in r and "task/math/share" in r for r in rows)
    assert (run_dir / "rollout_worker.rank1.pid").is_file()
    resumed = run_entry("train.py", run_dir, *MIX_TINY, "rollout.async_steps=1",
                        "trainer.max_steps=3", "eval.every_steps=0", "checkpoint.resume=auto",
                        cache=cache)
    assert "on 2 processes; this run samples those steps' prompts again" in (
        resumed.stdout + resumed.stderr)
    assert [r["step"] for r in steps(run_dir)] == [1, 2, 3]
