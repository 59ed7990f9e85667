"""A short GRPO run's per-step metrics, timings left out: the recorded trajectory that
tests/test_trajectory.py holds the code to (the layout change of issue 15 was checked this way).

Record anew only when a change is meant to alter training (the file is named by this CPU's
numerics, so each kind of machine keeps its own recording):
    PYTHONPATH=tests .venv/bin/python tests/helpers/trajectory.py tests/data
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


def numerics_fingerprint() -> str:
    """A short hash of a few float results on one thread (matmul, softmax, layer norm and their
    gradients): two CPUs whose kernels round differently give different trajectories, and this
    tells which recording a machine can be held to."""
    import hashlib

    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        g = torch.Generator().manual_seed(0)
        x = torch.randn(64, 96, generator=g, requires_grad=True)
        w = torch.randn(96, 96, generator=g) / 10
        y = torch.nn.functional.layer_norm(torch.log_softmax(x @ w, -1) @ w, (96,))
        y.pow(2).sum().backward()
        data = y.detach().numpy().tobytes() + x.grad.numpy().tobytes()
    finally:
        torch.set_num_threads(threads)
    return hashlib.sha256(data).hexdigest()[:12]


def trajectory(root: Path) -> list[dict]:
    """Run train.py with tiny settings under `root` and return its metric rows, timings dropped."""
    run_entry("train.py", root / "run", *OVERRIDES, cache=root / "cache")
    rows = read_jsonl(root / "run" / "metrics.jsonl")
    return [
        {k: v for k, v in row.items() if k != "time" and not k.startswith(TIMING)} for row in rows
    ]


def recording_path(folder: Path, fingerprint: str) -> Path:
    return Path(folder) / f"trajectory_math_tiny_{fingerprint}.json"


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        rows = trajectory(Path(tmp))
    out = Path(sys.argv[1])
    if out.is_dir():
        out = recording_path(out, numerics_fingerprint())
    out.write_text(json.dumps(rows, indent=1) + "\n")
    print(f"{len(rows)} rows written to {out}")
