"""A training process killed with SIGKILL mid-run resumes and reproduces the uninterrupted run."""
import json
import os
import subprocess
import sys

import pytest
from helpers.runs import ROOT, TINY_OVERRIDES, kill_once_written

pytestmark = pytest.mark.slow
SETTINGS = [*TINY_OVERRIDES, "trainer.prompts_per_step=8", "trainer.max_steps=12",
            "checkpoint.every_steps=4",
            "checkpoint.keep_last=10", "eval.every_steps=0", "logging.tensorboard=false"]
# Wall-clock figures differ between runs by nature; everything else must match exactly.
TIMING = ("time", "time/step_s", "time/rollout_s", "time/update_s", "throughput/tokens_per_s")


def command(run_dir, *extra):
    return [sys.executable, str(ROOT / "train.py"), *SETTINGS, f"hydra.run.dir={run_dir}", *extra]


def step_metrics(run_dir):
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in TIMING} for r in rows]


def test_sigkill_then_resume_matches_an_uninterrupted_run(tmp_path):
    env = {**os.environ, "HYBRID_RL_CACHE": str(tmp_path / "cache"), "PYTHONUNBUFFERED": "1"}
    subprocess.run(
        command(tmp_path / "whole"), cwd=ROOT, env=env, check=True, capture_output=True, timeout=600
    )

    killed = tmp_path / "killed"
    kill_once_written(command(killed), env, killed / "checkpoints" / "step_000008")
    lines_at_kill = len((killed / "metrics.jsonl").read_text().splitlines())
    assert lines_at_kill < 13, "the kill came too late to test anything"

    subprocess.run(command(killed, "checkpoint.resume=auto"), cwd=ROOT, env=env, check=True,
                   capture_output=True, timeout=600)
    assert step_metrics(killed) == step_metrics(tmp_path / "whole")
