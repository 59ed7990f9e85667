"""GRPO, online DPO and rejection sampling on the same task, from the same warm-up, for the same
training time: held-out accuracy against training seconds, one table and one plot.

    .venv/bin/python scripts/rl_free_comparison.py [--budget-s 240] [--out outputs/rl_free]
        [extra overrides for all three, e.g. task=math]

Each recipe runs at its own defaults (train.py, dpo.py, rejection_sampling.py) with
trainer.max_time_s set to the budget (rejection sampling: rounds until the budget is spent).
Training seconds count the steps only, not the evaluations. Writes <out>/comparison.png.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECIPES = {
    "GRPO": ["train.py"],
    "online DPO": ["dpo.py"],
    "rejection sampling": ["rejection_sampling.py", "rejection.rounds=100000"],
}


def curve(run_dir: Path) -> list[tuple[float, float]]:
    """(training seconds, held-out accuracy) at each evaluation of a run."""
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    spent, seconds = {}, 0.0
    for r in sorted((r for r in rows if "time/step_s" in r), key=lambda r: r["step"]):
        seconds += r["time/step_s"]
        spent[r["step"]] = seconds
    return [(spent.get(r["step"], 0.0), r["eval/accuracy"]) for r in rows if "eval/accuracy" in r]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--budget-s", type=float, default=240.0)
    parser.add_argument("--out", default="outputs/rl_free")
    args, extra = parser.parse_known_args()
    out = (ROOT / args.out).resolve()
    curves = {}
    for name, (script, *own) in RECIPES.items():
        run_dir = out / name.replace(" ", "_")
        if not (run_dir / "training_curves.png").is_file():  # finished before: kept
            cmd = [sys.executable, str(ROOT / script), *own, f"trainer.max_time_s={args.budget_s}",
                   f"hydra.run.dir={run_dir}", *extra]
            print("$", " ".join(cmd[1:]), flush=True)
            proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
            if proc.returncode != 0:
                raise SystemExit(f"{script} failed:\n{proc.stderr[-5000:]}")
        curves[name] = curve(run_dir)
    print("\n| recipe | held-out accuracy at start | at the end | best | training seconds | "
          "evaluations |\n|---|---|---|---|---|---|")
    for name, points in curves.items():
        print(f"| {name} | {points[0][1]:.1%} | {points[-1][1]:.1%} | "
              f"{max(a for _, a in points):.1%} | {points[-1][0]:.0f} | {len(points)} |")
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
    fig.savefig(out / "comparison.png", dpi=100)
    print(f"\nplot: {out / 'comparison.png'}")


if __name__ == "__main__":
    main()
