"""Cluster sweeps through Hydra's submitit launcher, run here with its local executor."""
import json
import os
import subprocess
import sys

import pytest
from helpers.runs import ROOT, TINY_OVERRIDES

pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="hydra-submitit-launcher is "
                                                                    "in the dev set-up")
pytestmark = pytest.mark.slow


def test_a_2x2_sweep_runs_through_submitit_local(tmp_path):
    sweep = tmp_path / "sweep"
    env = {**os.environ, "HYBRID_RL_CACHE": str(tmp_path / "cache"), "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "train.py", "-m", "hydra/launcher=local", *TINY_OVERRIDES,
           f"hydra.sweep.dir={sweep}", "trainer.max_steps=1", "eval.at_start=false",
           "trainer.warmup_steps=0", "trainer.lr_schedule=constant",
           "trainer.learning_rate=1e-4,5e-5", "task.rewards.correctness.weight=1.0,0.5"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    seen = set()
    for job in range(4):
        run = sweep / str(job)
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        assert [r["step"] for r in rows if "loss" in r] == [1]
        config = (run / "config.yaml").read_text()
        lr = rows[0]["lr"]
        weight = next(
            line.split(":")[1].strip()
            for line in config.splitlines()
            if line.strip().startswith("weight:")
        )
        seen.add((lr, float(weight)))
    assert seen == {(1e-4, 1.0), (1e-4, 0.5), (5e-5, 1.0), (5e-5, 0.5)}
    # submitit's own records: each point ran as its own submitted job
    assert len(list((sweep / ".submitit").glob("*/*_result.pkl"))) == 4
