"""Cluster runs through a real SLURM scheduler: scripts/slurm_local.sh starts a one-node
cluster (slurmctld and slurmd) for this module, and every test submits to it as a user would:
a Hydra sweep as a job array, a 2-task DeepSpeed job, a cancelled job, a signalled and
requeued job. The last test stops the cluster and checks no daemon is left behind."""
import os
import subprocess
import sys
import time

import pytest
from helpers.runs import ROOT, TINY_OVERRIDES, processes_gone, read_jsonl

SCRIPT = ROOT / "scripts" / "slurm_local.sh"
TIMING = ("time", "time/step_s", "time/rollout_s", "time/update_s", "throughput/tokens_per_s")
# a reward random completions sometimes earn, and a rate that moves the weights: runs that
# did not reproduce each other's steps would differ
MOVING = ["task.rewards.correctness.verifier={_target_:watch_helpers.contains_seven}",
          "trainer.learning_rate=0.01", "rollout.temperature=1.5", "logging.tensorboard=false",
          "eval.every_steps=0"]


def on_this_node(tasks: int = 1) -> list[str]:
    """conf/hydra/launcher/slurm.yaml's settings (8 GPUs, 8 tasks), scaled to a CPU node."""
    return ["hydra/launcher=slurm", "hydra.launcher.gpus_per_node=0",
            f"hydra.launcher.tasks_per_node={tasks}", "hydra.launcher.cpus_per_task=1",
            "hydra.launcher.timeout_min=10"]



pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    where = tmp_path_factory.mktemp("slurm")
    env = {**os.environ, "SLURM_LOCAL_DIR": str(where), "PYTHONUNBUFFERED": "1",
           "HYBRID_RL_CACHE": str(where / "cache"), "DS_ACCELERATOR": "cpu",
           "PYTHONPATH": str(ROOT / "tests" / "helpers")}
    started = subprocess.run(["bash", str(SCRIPT), "start"], env=env, capture_output=True,
                             text=True, timeout=300)
    if started.returncode == 3:  # slurm-wlm missing and no way to install it here
        pytest.skip(started.stderr.strip())
    assert started.returncode == 0, started.stderr
    env.update(SLURM_CONF=str(where / "slurm.conf"), PATH=f"{where / 'bin'}:{env['PATH']}")
    daemons = [int((where / f"{d}.started").read_text()) for d in ("slurmctld", "slurmd")]
    yield env, where, daemons
    subprocess.run(["bash", str(SCRIPT), "stop"], env=env, capture_output=True, timeout=60)


def job_rows(run_dir):
    return [{k: v for k, v in r.items() if k not in TIMING}
            for r in read_jsonl(run_dir / "metrics.jsonl")]


def squeue(env) -> list[str]:
    out = subprocess.run(["squeue", "-h", "-o", "%i %T"], env=env, capture_output=True,
                         text=True).stdout
    return out.split("\n")[:-1]


def start_sweep(env, sweep, *overrides) -> subprocess.Popen:
    """A tiny train.py sweep through hydra/launcher=slurm, running in the background."""
    return subprocess.Popen(
        [sys.executable, str(ROOT / "train.py"), "-m", *TINY_OVERRIDES, *on_this_node(),
         "logging.tensorboard=false", "eval.every_steps=0", *overrides,
         f"hydra.sweep.dir={sweep}"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_a_sweep_runs_as_a_job_array_and_lands_where_the_readme_says(cluster, tmp_path):
    env, _, _ = cluster
    sweep = tmp_path / "sweep"
    proc = start_sweep(env, sweep, "trainer.max_steps=1", "trainer.beta=0,0.04", "seed=0,1")
    seen, deadline = set(), time.monotonic() + 300
    while proc.poll() is None and time.monotonic() < deadline:
        seen.update(line.split()[0] for line in squeue(env))
        time.sleep(0.3)
    if proc.poll() is None:
        proc.kill()
        pytest.fail(f"the sweep did not end in 300 s; squeue: {squeue(env)}")
    out = proc.stdout.read()
    assert proc.returncode == 0, out[-3000:]
    array = {job.split("_")[0] for job in seen if "_" in job}
    assert len(array) == 1, seen  # the four points were one job array while they ran
    for job in range(4):
        rows = read_jsonl(sweep / str(job) / "metrics.jsonl")
        assert [r["step"] for r in rows if "loss" in r] == [1]
    [array_id] = array
    logs = sorted(p.name for p in (sweep / ".submitit").glob(f"{array_id}_*/*_log.out"))
    assert len(logs) == 4, logs  # submitit's logs, one per point, under .submitit/


def test_a_two_task_job_is_the_torchrun_run(cluster, tmp_path):
    """tasks_per_node=2: adopt_slurm_environment turns SLURM's variables into the two
    processes torchrun would start; the DeepSpeed run's every step is the torchrun run's."""
    env, _, _ = cluster
    common = [*TINY_OVERRIDES, *MOVING, "deepspeed=zero2", "trainer.max_steps=2",
              "trainer.beta=0.04"]
    sweep = tmp_path / "slurm"
    subprocess.run([sys.executable, str(ROOT / "train.py"), "-m", *common,
                    *on_this_node(tasks=2), f"hydra.sweep.dir={sweep}"],
                   cwd=ROOT, env=env, check=True, capture_output=True, timeout=600)
    torchrun = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         str(ROOT / "train.py"), *common, f"hydra.run.dir={tmp_path / 'torchrun'}"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert torchrun.returncode == 0, torchrun.stderr[-3000:]
    slurm_rows = job_rows(sweep / "0")
    assert slurm_rows == job_rows(tmp_path / "torchrun")
    assert any(r.get("grad_norm", 0) > 0 for r in slurm_rows)  # the steps moved the weights
    import torch

    state = torch.load(sweep / "0" / "checkpoints" / "step_000002" / "trainer_state.pt",
                       weights_only=False)
    assert state["world_size"] == 2


def test_a_cancelled_job_fails_the_sweep_naming_it_instead_of_hanging(cluster, tmp_path):
    env, _, _ = cluster
    sweep = tmp_path / "sweep"
    proc = start_sweep(env, sweep, "trainer.max_steps=100000", "seed=0")
    deadline, running = time.monotonic() + 120, []
    while not running and time.monotonic() < deadline:  # cancelled as soon as it runs: submitit
        running = [line.split()[0] for line in squeue(env) if line.endswith("RUNNING")]
        time.sleep(0.2)  # asks at 2, 4, 8, 16... s, so the sooner the cancel, the sooner seen
    [job] = running
    subprocess.run(["scancel", job], env=env, check=True)
    try:
        out, _ = proc.communicate(timeout=180)  # submitit polls at 2, 4, 8, 16, 32... s
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("the sweep still waits on the cancelled job")
    assert proc.returncode != 0
    assert "state: CANCELLED" in out and str(sweep / ".submitit" / job) in out


def test_a_signalled_job_checkpoints_requeues_and_resumes_exactly(cluster, tmp_path):
    """USR1 (what `sbatch --signal=USR1@<s>` sends before the time limit): the run writes a
    checkpoint after its current step, requeues its job and exits; the requeued job resumes
    from that checkpoint and ends where an uninterrupted run ends."""
    env, _, _ = cluster
    settings = [*TINY_OVERRIDES, *MOVING, "trainer.max_steps=20",
                "checkpoint.every_steps=1000"]  # no periodic checkpoint to fall back on
    subprocess.run([sys.executable, str(ROOT / "train.py"), *settings,
                    f"hydra.run.dir={tmp_path / 'whole'}"], cwd=ROOT, env=env, check=True,
                   capture_output=True, timeout=600)
    run_dir = tmp_path / "signalled"
    script = tmp_path / "job.sh"
    script.write_text("#!/bin/bash\n#SBATCH --requeue\n#SBATCH --cpus-per-task=1\n"
                      f"#SBATCH --output={tmp_path}/slurm-%j.out\n"
                      f"srun {sys.executable} {ROOT / 'train.py'} "
                      + " ".join(f"'{s}'" for s in settings) + f" hydra.run.dir={run_dir}\n")
    job = subprocess.run(["sbatch", "--parsable", str(script)], env=env, check=True,
                         capture_output=True, text=True).stdout.strip()

    def steps_logged():
        path = run_dir / "metrics.jsonl"
        return sum('"loss"' in line for line in path.read_text().splitlines()) \
            if path.is_file() else 0

    def state():
        out = subprocess.run(["scontrol", "show", "job", job, "-o"], env=env,
                             capture_output=True, text=True).stdout
        return dict(p.split("=", 1) for p in out.split() if "=" in p)

    deadline = time.monotonic() + 180
    while steps_logged() < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    subprocess.run(["scancel", "--signal=USR1", job], env=env, check=True)
    while not (int(state().get("Restarts", 0)) and state().get("JobState") == "PENDING") \
            and time.monotonic() < deadline:
        time.sleep(0.2)
    # SLURM holds a requeued job for two minutes before it may start again; start it now
    while state().get("JobState") == "PENDING" and time.monotonic() < deadline:
        subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], env=env)
        time.sleep(1)
    while state().get("JobState") != "COMPLETED" and time.monotonic() < deadline + 120:
        time.sleep(0.3)
    log = (run_dir / "train.log").read_text()
    assert "SIGUSR1 received: the checkpoint of step" in log and "requeued" in log
    assert "resumed from" in log
    assert job_rows(run_dir) == job_rows(tmp_path / "whole")


def test_stop_leaves_no_daemon_behind(cluster):
    env, where, daemons = cluster
    stopped = subprocess.run(["bash", str(SCRIPT), "stop"], env=env, capture_output=True,
                             text=True, timeout=60)
    assert stopped.returncode == 0 and "stopped slurmctld and slurmd" in stopped.stdout
    assert processes_gone(daemons) == []
    steps = subprocess.run(["pgrep", "-f", "slurmstepd"], capture_output=True, text=True)
    assert steps.stdout == ""  # no job step outlived the cluster either
