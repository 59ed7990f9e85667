"""A preference-judged comparison: how far DPO on rubric-labelled pairs and GRPO with the
learned preference signal move the policy in the reward model's eyes, for the same training
time, from the same warm-up.

    .venv/bin/python scripts/preference_comparison.py [--on math_hybrid|mixture]
        [--budget-s 240] [--out outputs/preference_comparison] [extra overrides for every run]

--on math_hybrid: the verifier decides right or wrong; the default reward model, trained on
rubric-labelled pairs, ranks the right answers. --on mixture: the default mixture
(mix=reasoning_and_style), whose `explain` task is judged by the reward model alone. Runs:
- GRPO: train.py, the task's composed reward (verifier and/or gated preference);
- offline DPO: dpo.py dpo.pairs=offline, rubric-labelled pairs of the warm-up's own samples
  (the pairs the reward model learned from);
- online DPO: dpo.py, best against worst by the composed reward.
Each at its own defaults with trainer.max_time_s = the budget. Then evaluate.py judges every
final policy on the held-out problems: the reward model's win rate against the starting policy
(greedy answers, ties half; a task without the reward model is judged by its verifier), the
mean reward-model score, verified accuracy and the share of answers in the rubric's preferred
style.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = {"math_hybrid": ["task=math_hybrid"], "mixture": ["mix=reasoning_and_style"]}
RECIPES = {
    "GRPO": ["train.py"],
    "offline DPO (rubric pairs)": ["dpo.py", "dpo.pairs=offline"],
    "online DPO (composed reward)": ["dpo.py"],
}


def run(script: str, *overrides: str) -> None:
    cmd = [sys.executable, str(ROOT / script), *overrides]
    print("$", " ".join(cmd[1:]), flush=True)
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{script} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")


def steps_and_seconds(run_dir: Path) -> tuple[int, float]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "time/step_s" in r]
    return len(steps), sum(r["time/step_s"] for r in steps)


def evaluation(folder: Path, task: str) -> dict:
    """task -> evaluate.py's results of the one model evaluated in `folder` (a mixture's
    tasks each in a folder of their own)."""
    return {(p.parent.name if p.parent != folder else task):
            json.loads(p.read_text())["models"][0] for p in sorted(folder.glob("**/results.json"))}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--on", choices=sorted(SETTINGS), default="math_hybrid")
    parser.add_argument("--budget-s", type=float, default=240.0)
    parser.add_argument("--out", default="outputs/preference_comparison")
    args, extra = parser.parse_known_args()
    out, common = (ROOT / args.out).resolve(), [*SETTINGS[args.on], *extra]
    folders = {name: out / name.split(" (")[0].replace(" ", "_") for name in RECIPES}
    for name, (script, *own) in RECIPES.items():
        if not (folders[name] / "training_curves.png").is_file():  # finished before: kept
            run(script, *common, *own, f"trainer.max_time_s={args.budget_s}",
                f"hydra.run.dir={folders[name]}")
    quick = ["eval.samples_per_prompt=0", *common]
    results = {}
    for name, folder in {"start": None, **folders}.items():  # each judged against the start
        where = out / "eval" / ("start" if folder is None else folder.name)
        if not (where / "evaluate.log").is_file():
            model = ["evaluate.reference=null"] if folder is None else [
                f"evaluate.checkpoint={folder}"]
            run("evaluate.py", *quick, *model, f"hydra.run.dir={where}")
        results[name] = evaluation(where, args.on)
    print("\n| policy | task | steps | training seconds | win rate vs start (W/T/L) | "
          "reward-model score | held-out accuracy | preferred style |\n" + "|---" * 8 + "|")
    for name, tasks in results.items():
        steps, seconds = (0, 0.0) if name == "start" else steps_and_seconds(folders[name])
        for task, r in tasks.items():
            w = r.get("win_rate")
            wins = f"{w['win_rate']:.2f} ({w['wins']}/{w['ties']}/{w['losses']})" if w else "-"
            score = r["signal_means"].get("preference")
            print(f"| {name} | {task} | {steps} | {seconds:.0f} | {wins} | "
                  f"{'-' if score is None else f'{score:.2f}'} | {r['accuracy']:.1%} | "
                  f"{r['preferred_style']:.0%} |")


if __name__ == "__main__":
    main()
