"""Does an uncertainty-penalised reward-model ensemble slow the reward hacking of a task
trained by the learned reward alone? The default mixture as it ships (`explain` is trained by
the reward model only; README "Task mixtures"), scored by an ensemble of K reward models,
trained twice from the same warm-up, ensemble, seed and steps: `explain` rewarded by the
members' mean, then by mean - k * std.

    .venv/bin/python scripts/ensemble_demo.py [--out outputs/ensemble_demo] [--k 1.0]
                                              [--members 3] [extra train.py overrides]

Prints, per run and task trained by the reward model, held-out verified accuracy at each
evaluation, the members' disagreement on the policy's samples in units of their disagreement
on the validation pairs (hacking/<task>/disagreement_ratio: first, highest, last), and when
each watch fired.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WATCHED = ("explain_hybrid", "explain")  # the tasks with a reward-model signal


def train(folder: Path, overrides: list[str]) -> list[dict]:
    """One run's metrics rows; a run that finished before (its plot is written last) is kept."""
    if not (folder / "training_curves.png").is_file():
        cmd = [sys.executable, str(ROOT / "train.py"), "mix=reasoning_and_style", *overrides,
               f"hydra.run.dir={folder}"]
        print("$", " ".join(cmd[1:]), flush=True)
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"train.py failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


def report(name: str, rows: list[dict], task: str) -> str:
    evals = [(r["step"], r[f"eval/{task}/accuracy"]) for r in rows
             if f"eval/{task}/accuracy" in r]
    ratio = [r[f"hacking/{task}/disagreement_ratio"] for r in rows
             if r.get(f"hacking/{task}/disagreement_ratio") is not None]
    first = {kind: next((r["step"] for r in rows if r.get(f"hacking/{task}/{kind}")), None)
             for kind in ("disagreement_alarm", "alarm")}
    accuracy = " -> ".join(f"{a:.1%}" for _, a in evals)
    said = ", ".join(f"{kind.replace('_', ' ')} at step {step}"
                     for kind, step in first.items() if step is not None) or "quiet"
    return (f"| {task} | {name} | {accuracy} | {ratio[0]:.2f} / {max(ratio):.2f} / "
            f"{ratio[-1]:.2f} | {said} |")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="outputs/ensemble_demo")
    parser.add_argument("--k", type=float, default=1.0, help="the uncertainty penalty")
    parser.add_argument("--members", type=int, default=3)
    args, extra = parser.parse_known_args()
    out = (ROOT / args.out).resolve()
    common = [f"reward_model.ensemble_size={args.members}", *extra]
    penalty = f"+mix.tasks.explain.rewards.preference.uncertainty_penalty={args.k}"
    runs = {"mean": train(out / "mean", common),  # trains (or reuses) warm-up and ensemble
            f"mean - {args.k:g} std": train(out / "penalised", [*common, penalty])}
    print("\n| task | reward | held-out accuracy (every 50 steps) | disagreement ratio "
          "first / max / last | watches |\n|---|---|---|---|---|")
    for task in WATCHED:
        for name, rows in runs.items():
            print(report(name, rows, task))


if __name__ == "__main__":
    main()
