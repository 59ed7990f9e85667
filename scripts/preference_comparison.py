"""A preference-judged comparison: how far DPO on rubric-labelled pairs and GRPO with the
learned preference signal move the policy in the reward model's eyes, for the same training
time, from the same warm-up.

    .venv/bin/python scripts/preference_comparison.py [--budget-s 240]
        [--out outputs/preference_comparison] [extra overrides for every run]

On task=math_hybrid (the verifier decides right or wrong; the default reward model, trained on
rubric-labelled pairs, ranks the right answers):
- GRPO: `train.py task=math_hybrid`, the composed reward (verifier + gated preference);
- offline DPO: `dpo.py task=math_hybrid dpo.pairs=offline`, rubric-labelled pairs of the
  warm-up's own samples (the pairs the reward model learned from);
- online DPO: `dpo.py task=math_hybrid`, best against worst by the composed reward.
Each at its own defaults with trainer.max_time_s = the budget. Then evaluate.py judges every
final policy on the held-out problems: the reward model's win rate against the starting policy
(greedy answers, ties half), the mean reward-model score, verified accuracy and the share of
answers in the rubric's preferred style.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TASK = "task=math_hybrid"
RECIPES = {
    "GRPO (verifier + preference)": ["train.py"],
    "offline DPO (rubric pairs)": ["dpo.py", "dpo.pairs=offline"],
    "online DPO (composed reward)": ["dpo.py"],
}


def run(script: str, *overrides: str) -> None:
    cmd = [sys.executable, str(ROOT / script), TASK, *overrides]
    print("$", " ".join(cmd[1:]), flush=True)
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{script} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")


def steps_and_seconds(run_dir: Path) -> tuple[int, float]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "time/step_s" in r]
    return len(steps), sum(r["time/step_s"] for r in steps)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--budget-s", type=float, default=240.0)
    parser.add_argument("--out", default="outputs/preference_comparison")
    args, extra = parser.parse_known_args()
    out = (ROOT / args.out).resolve()
    folders = {name: out / name.split(" (")[0].replace(" ", "_") for name in RECIPES}
    for name, (script, *own) in RECIPES.items():
        if not (folders[name] / "training_curves.png").is_file():  # finished before: kept
            run(script, *own, f"trainer.max_time_s={args.budget_s}",
                f"hydra.run.dir={folders[name]}", *extra)
    results = {"start": None}
    for name, folder in folders.items():  # one evaluation a model, each against the start
        evaluation = out / "eval" / folder.name
        if not (evaluation / "results.json").is_file():
            run("evaluate.py", "eval.samples_per_prompt=0", f"evaluate.checkpoint={folder}",
                f"hydra.run.dir={evaluation}", *extra)
        results[name] = json.loads((evaluation / "results.json").read_text())["models"][0]
    if not (out / "eval" / "start" / "results.json").is_file():
        run("evaluate.py", "eval.samples_per_prompt=0", "evaluate.reference=null",
            f"hydra.run.dir={out / 'eval' / 'start'}", *extra)
    results["start"] = json.loads((out / "eval" / "start" / "results.json").read_text())[
        "models"][0]
    print("\n| policy | steps | training seconds | reward-model win rate vs start (W/T/L) | "
          "reward-model score | held-out accuracy | preferred style |\n" + "|---" * 7 + "|")
    for name, r in results.items():
        steps, seconds = (0, 0.0) if name == "start" else steps_and_seconds(folders[name])
        w = r.get("win_rate")
        wins = (f"{w['win_rate']:.2f} ({w['wins']}/{w['ties']}/{w['losses']})" if w else "-")
        print(f"| {name} | {steps} | {seconds:.0f} | {wins} | "
              f"{r['signal_means']['preference']:.2f} | {r['accuracy']:.1%} | "
              f"{r['preferred_style']:.0%} |")


if __name__ == "__main__":
    main()
