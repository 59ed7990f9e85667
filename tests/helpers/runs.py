"""Shared by the tests: the repository root, tiny settings, and running the real entry points
(train.py, sft.py, ...) as a user would, in a fresh process."""
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


# Tiny settings that make the real entry points finish in seconds.
TINY_OVERRIDES = [
    "model.tiny.hidden_size=32", "model.tiny.num_layers=2", "model.tiny.num_heads=2",
    "model.tiny.intermediate_size=64", "sft.steps=4", "sft.batch_size=8", "sft.log_every=2",
    "task.data.num_train=64", "task.data.num_eval=8",
    "trainer.prompts_per_step=4", "trainer.num_generations=2", "rollout.max_new_tokens=4",
    "logging.progress_bar=false", "logging.samples_every_steps=1", "logging.num_samples=2",
    "eval.every_steps=1", "num_threads=1",
]


def processes_gone(pids, timeout_s: float = 5.0) -> list[int]:
    """Wait until none of `pids` is alive (zombies count as gone); returns those still alive."""
    import time

    def alive(pid):
        try:
            return "zombie" not in open(f"/proc/{pid}/status").read()
        except OSError:
            return False

    deadline, left = time.monotonic() + timeout_s, list(pids)
    while left and time.monotonic() < deadline:
        left = [pid for pid in left if alive(pid)]
        time.sleep(0.05)
    return [pid for pid in left if alive(pid)]


def children_of_a_killed_parent(setup: str, pids_expression: str) -> list[int]:
    """Run `setup` in a fresh Python, read back the pids `pids_expression` names, SIGKILL that
    Python (no chance to clean up) and return the pids, for the caller to check they die too."""
    import signal
    import subprocess
    import sys

    script = (f"{setup}\nprint(' '.join(str(p) for p in {pids_expression}), "
              "flush=True)\nimport time\ntime.sleep(60)\n")
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    pids = [int(pid) for pid in parent.stdout.readline().split()]
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    return pids


def tiny_overrides(script: str) -> list[str]:
    """TINY_OVERRIDES that exist in `script`'s schema (train_rm.py and evaluate.py have no
    trainer or logging sections)."""
    from dataclasses import fields

    from hybrid_rl.config.schema import (
        AIFeedbackRecipeConfig,
        Config,
        EvaluateRecipeConfig,
        RewardModelRecipeConfig,
    )

    schema = {"train_rm.py": RewardModelRecipeConfig, "evaluate.py": EvaluateRecipeConfig,
              "ai_feedback.py": AIFeedbackRecipeConfig}
    sections = {f.name for f in fields(schema.get(script, Config))}
    return [o for o in TINY_OVERRIDES if o.split("=")[0].split(".")[0] in sections]


def run_entry(script, run_dir, *overrides, cache, check=True, env=None):
    env = {**os.environ, "HYBRID_RL_CACHE": str(cache), "PYTHONUNBUFFERED": "1", **(env or {})}
    cmd = [sys.executable, str(ROOT / script), *tiny_overrides(script),
           f"hydra.run.dir={run_dir}", *overrides]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"{script} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


def read_jsonl(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def kill_once_written(cmd, env, marker, timeout_s: float = 300) -> None:
    """Start `cmd` (a training run) and SIGKILL it, giving it no chance to clean up, as soon as
    `marker` (say its first checkpoint) exists."""
    import signal
    import time

    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + timeout_s
    while not Path(marker).exists() and time.time() < deadline:
        assert proc.poll() is None, "the run ended before it could be killed"
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


# what differs between two runs of the same steps: wall-clock figures
TIMING = ("time", "time/step_s", "time/rollout_s", "time/update_s", "throughput/tokens_per_s")


def rows_without_timing(run_dir) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIMING}
            for r in read_jsonl(Path(run_dir) / "metrics.jsonl")]


def killed_and_resumed(script, run_dir, *overrides, cache, kill_at_step: int, total_steps: int,
                       env=None) -> list[dict]:
    """Run `script` until its checkpoint of `kill_at_step` exists, SIGKILL it, resume it with
    checkpoint.resume=auto to the end; its metric rows without timings."""
    cmd = [sys.executable, str(ROOT / script), *tiny_overrides(script), *overrides,
           f"hydra.run.dir={run_dir}"]
    env = {**os.environ, "HYBRID_RL_CACHE": str(cache), "PYTHONUNBUFFERED": "1", **(env or {})}
    kill_once_written(cmd, env, Path(run_dir) / "checkpoints" / f"step_{kill_at_step:06d}")
    steps = [r for r in rows_without_timing(run_dir) if "lr" in r]
    assert len(steps) < total_steps, "the kill came too late"
    subprocess.run([*cmd, "checkpoint.resume=auto"], cwd=ROOT, env=env, check=True,
                   capture_output=True, timeout=600)
    return rows_without_timing(run_dir)


def config_error(config_name: str, *overrides: str) -> str:
    """The message of the ConfigError that composing an entry point's config (`config` for
    train.py, `dpo`, `rejection_sampling`, ...) with `overrides` raises: the schema's own checks,
    in this process, as the entry point runs them before any work. '' when the config is valid.
    (That the entry points print these and stop is tested on train.py itself.)"""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from hybrid_rl.config.schema import ConfigError, register_configs

    register_configs()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        try:
            OmegaConf.to_object(compose(config_name=config_name, overrides=list(overrides)))
        except ConfigError as exc:
            return str(exc)
    return ""
