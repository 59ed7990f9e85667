"""A short GRPO run's per-step metrics, timings left out: the recorded trajectory that
tests/test_trajectory.py holds the code to (the layout change of issue 15 was checked this way).

Record anew only when a change is meant to alter training:
    PYTHONPATH=tests .venv/bin/python tests/helpers/trajectory.py \
        tests/data/trajectory_math_tiny.json
"""
import json
import sys
import tempfile
from pathlib import Path

from helpers.runs import read_jsonl, run_entry

# One-digit sums after a longer warm-up, so that groups disagree and the update has work to do.
# The optimiser and data settings are spelled out, so retuning task=math's defaults
# (conf/task_training/math.yaml) leaves the recorded trajectory valid.
OVERRIDES = ["task=math", "task.data.generator_args.min_digits=1",
             "task.data.generator_args.max_digits=1", "task.data.generator_args.slip_rate=0",
             "trainer.learning_rate=5e-5", "trainer.lr_schedule=constant", "trainer.warmup_steps=0",
             "sft.steps=250", "sft.batch_size=32", "trainer.num_generations=4",
             "trainer.max_steps=3", "trainer.beta=0.04", "seed=3",
             "checkpoint.every_steps=0", "checkpoint.save_final=false", "logging.tensorboard=false"]
TIMING = ("time/", "throughput/")  # and "time", the wall clock of each row


def trajectory(root: Path) -> list[dict]:
    """Run train.py with tiny settings under `root` and return its metric rows, timings dropped."""
    run_entry("train.py", root / "run", *OVERRIDES, cache=root / "cache")
    rows = read_jsonl(root / "run" / "metrics.jsonl")
    return [
        {k: v for k, v in row.items() if k != "time" and not k.startswith(TIMING)} for row in rows
    ]


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        rows = trajectory(Path(tmp))
    Path(sys.argv[1]).write_text(json.dumps(rows, indent=1) + "\n")
    print(f"{len(rows)} rows written to {sys.argv[1]}")
