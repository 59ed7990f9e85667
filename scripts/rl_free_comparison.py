"""Recipes side by side on the same task, from the same warm-up, for the same training time:
held-out accuracy against training seconds, mean step time and peak memory; one table and one
plot.

    .venv/bin/python scripts/rl_free_comparison.py [--budget-s 240] [--out outputs/rl_free]
        [extra overrides for every run, e.g. task=math]
    .venv/bin/python scripts/rl_free_comparison.py --set estimators --out outputs/estimators

--set rl_free (default): GRPO, online DPO and rejection sampling. --set estimators: GRPO,
RLOO, REINFORCE++, GSPO and PPO (train.py with each trainer preset). --set lora: GRPO training
every weight against LoRA adapters (model.lora) at the same and a 2.5x rate. Each recipe
runs at its own defaults with trainer.max_time_s set to the budget (rejection sampling: rounds
until the budget is spent). Training seconds count the steps only, not the evaluations; peak
memory is the largest resident set of the run's processes. Writes <out>/comparison.png.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SETS = {
    "rl_free": {
        "GRPO": ["train.py"],
        "online DPO": ["dpo.py"],
        "rejection sampling": ["rejection_sampling.py", "rejection.rounds=100000"],
    },
    "estimators": {
        "GRPO": ["train.py"],
        "RLOO": ["train.py", "trainer=rloo"],
        "REINFORCE++": ["train.py", "trainer=reinforce_pp"],
        "GSPO": ["train.py", "trainer=gspo"],
        "PPO": ["train.py", "trainer=ppo"],
    },
    "lora": {  # adapters usually want a larger rate than full fine-tuning: both are shown
        "full fine-tuning": ["train.py"],
        "LoRA r=16": ["train.py", "model.lora.enabled=true"],
        "LoRA r=16, lr 5e-4": ["train.py", "model.lora.enabled=true", "trainer.learning_rate=5e-4"],
    },
}


def curve(run_dir: Path) -> list[tuple[float, float]]:
    """(training seconds, held-out accuracy) at each evaluation of a run."""
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    spent, seconds = {}, 0.0
    for r in sorted((r for r in rows if "time/step_s" in r), key=lambda r: r["step"]):
        seconds += r["time/step_s"]
        spent[r["step"]] = seconds
    return [(spent.get(r["step"], 0.0), r["eval/accuracy"]) for r in rows if "eval/accuracy" in r]


def mean_step_s(run_dir: Path) -> float:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    steps = [r["time/step_s"] for r in rows if "time/step_s" in r]
    return sum(steps) / max(len(steps), 1)


def run_measured(cmd: list[str], run_dir: Path) -> float:
    """Run `cmd` (its output to <run_dir>.log); its peak resident memory in GB (the process
    and the children it waited for, as the kernel reports it)."""
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{run_dir}.log", "w") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{cmd[1]} failed; its output is in {run_dir}.log")
    peak = usage.ru_maxrss / 1e6  # kilobytes on Linux
    (run_dir / "peak_rss_gb.txt").write_text(f"{peak:.3f}\n")
    return peak


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--budget-s", type=float, default=240.0)
    parser.add_argument("--set", choices=sorted(SETS), default="rl_free")
    parser.add_argument("--out", default="outputs/rl_free")
    args, extra = parser.parse_known_args()
    out = (ROOT / args.out).resolve()
    rows = {}
    for name, (script, *own) in SETS[args.set].items():
        run_dir = out / name.replace(" ", "_").replace("+", "p").replace(",", "").replace("=", "")
        if not (run_dir / "training_curves.png").is_file():  # finished before: kept
            cmd = [sys.executable, str(ROOT / script), *own, f"trainer.max_time_s={args.budget_s}",
                   f"hydra.run.dir={run_dir}", *extra]
            print("$", " ".join(cmd[1:]), flush=True)
            run_measured(cmd, run_dir)
        measured = run_dir / "peak_rss_gb.txt"  # absent for a run made before it was measured
        peak = float(measured.read_text()) if measured.is_file() else float("nan")
        rows[name] = (curve(run_dir), mean_step_s(run_dir), peak)
    print("\n| recipe | held-out accuracy at start | at the end | best | training seconds | "
          "evaluations | mean step (s) | peak memory (GB) |\n" + "|---" * 8 + "|")
    for name, (points, step_s, peak) in rows.items():
        print(f"| {name} | {points[0][1]:.1%} | {points[-1][1]:.1%} | "
              f"{max(a for _, a in points):.1%} | {points[-1][0]:.0f} | {len(points)} | "
              f"{step_s:.2f} | {peak:.2f} |")
    plot({name: points for name, (points, _, _) in rows.items()}, out / "comparison.png")


def plot(curves: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name, points in curves.items():
        ax.plot([s for s, _ in points], [a for _, a in points], marker="o", label=name)
    ax.set_xlabel("training seconds (2-core CPU)")
    ax.set_ylabel("held-out accuracy")
    ax.set_ylim(0, 1)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    print(f"\nplot: {path}")


if __name__ == "__main__":
    main()
