"""What each signal adds: the default mixture trained with three blends (and its own per-task
blends), then every task of each run evaluated against the shared starting policy.

    .venv/bin/python scripts/blend_demo.py [--out outputs/blend_demo] [extra train.py overrides]

Same warm-up, same reward model (the default mixture's, passed to every run so that the judge
never changes), same seed and steps; only the reward weights differ:
- verifier only: every task by the math verifier (the reward model logged at weight 0 where a
  task has it, so its score and the hacking watch are still there to read);
- reward model only: every task by the learned preference alone (correctness at weight 0);
- hybrid: every task by the verifier plus the preference gated on it (weight 0.5);
- per-task (the mixture file as it ships): math by the verifier, explain_hybrid hybrid,
  explain by the reward model.
Per task and blend it prints held-out verified accuracy (start -> end), the reward model's
held-out score (start -> end), its win rate against the starting policy (evaluate.py), the
share of greedy answers in the rubric's preferred style, and what the hacking watch said.
"""
from __future__ import annotations

import argparse
import json
import math
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TASKS = ("math", "explain_hybrid", "explain")
PREFERENCE = "{verifier:preference,weight:%s,normalize:group%s}"
BLENDS = {
    "verifier only": [
        "mix.tasks.explain.rewards.correctness.weight=1",
        "mix.tasks.explain.rewards.preference.weight=0",
        "mix.tasks.explain_hybrid.rewards.preference.weight=0",
    ],
    "reward model only": [
        "mix.tasks.math.rewards.correctness.weight=0",
        "+mix.tasks.math.rewards.preference=" + PREFERENCE % (1.0, ""),
        "mix.tasks.explain_hybrid.rewards.correctness.weight=0",
        "mix.tasks.explain_hybrid.rewards.preference.gate=null",
        "mix.tasks.explain_hybrid.rewards.preference.weight=1",
    ],
    "hybrid": [
        "+mix.tasks.math.rewards.preference=" + PREFERENCE % (0.5, ",gate:correctness"),
        "mix.tasks.explain.rewards.correctness.weight=1",
        "+mix.tasks.explain.rewards.preference.gate=correctness",
        "mix.tasks.explain.rewards.preference.weight=0.5",
    ],
    "per-task (as shipped)": [],
}
# evaluate.py judges every task by the reward model: math gets it as a logged-only signal
JUDGED = ["+mix.tasks.math.rewards.preference=" + PREFERENCE % (0.0, "")]


def run(script: str, *overrides: str) -> str:
    cmd = [sys.executable, str(ROOT / script), "mix=reasoning_and_style", *overrides]
    print("$", " ".join(cmd[1:]), flush=True)
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{script} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc.stdout + proc.stderr


def train(folder: Path, overrides: list[str], extra: list[str]) -> None:
    """One blend's run; a run that finished before (its plot is written last) is kept, so an
    interrupted demonstration picks up where it stopped."""
    if not (folder / "training_curves.png").is_file():
        run("train.py", *overrides, f"hydra.run.dir={folder}", *extra)


def reward_model_folder(log: str) -> str:
    """The default reward model a run trained or reused, as its log names it."""
    found = re.search(r"\[reward model\] (?:reusing the cached default reward model|"
                      r"training the default reward model ->) (\S+)", log)
    if found is None:
        raise SystemExit("the run's log does not name its reward model")
    return found.group(1)


def evaluation(folder: Path) -> dict:
    """task -> evaluate.py's results of the one model evaluated in `folder`."""
    return {t: json.loads((folder / t / "results.json").read_text())["models"][0] for t in TASKS}


def watch_verdict(rows: list[dict], task: str) -> str:
    """The hacking watch runs on a task that has the reward model's signal (its held-out
    score is then a number, not NaN or null)."""
    alarms = [r["step"] for r in rows if r.get(f"hacking/{task}/alarm")]
    if alarms:
        return f"alarm at step {alarms[0]}"
    scored = [r[f"eval/{task}/reward/preference"] for r in rows
              if f"eval/{task}/reward/preference" in r]
    return "quiet" if any(v is not None and not math.isnan(v) for v in scored) else "not watched"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="outputs/blend_demo")
    args, extra = parser.parse_known_args()
    out = (ROOT / args.out).resolve()
    # the shipped mixture first: it trains (or reuses) the warm-up and the reward model
    first = "per-task (as shipped)"
    runs = {name: out / ("per-task" if name == first else name.replace(" ", "_"))
            for name in BLENDS}
    train(runs[first], BLENDS[first], extra)
    judge = [f"reward_model.path={reward_model_folder((runs[first] / 'train.log').read_text())}"]
    for name, overrides in BLENDS.items():
        if name != first:
            train(runs[name], [*overrides, *judge], extra)
    quick = ["eval.samples_per_prompt=0", *JUDGED, *judge]
    run("evaluate.py", *quick, f"hydra.run.dir={out / 'eval' / 'start'}")
    start = evaluation(out / "eval" / "start")
    lines = []  # (task, table row)
    for name, folder in runs.items():
        run("evaluate.py", *quick, f"evaluate.checkpoint={folder}",
            f"hydra.run.dir={out / 'eval' / folder.name}")
        end = evaluation(out / "eval" / folder.name)
        rows = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
        lines += [(task, row(task, name, start[task], end[task], watch_verdict(rows, task)))
                  for task in TASKS]
    lines.sort(key=lambda line: TASKS.index(line[0]))  # by task, the blends in order
    print("\n| task | blend | held-out accuracy | reward-model score | win rate vs start "
          "| preferred style | hacking watch |\n|---|---|---|---|---|---|---|")
    print("\n".join(text for _, text in lines))


def row(task: str, blend: str, start: dict, end: dict, verdict: str) -> str:
    return (f"| {task} | {blend} | {start['accuracy']:.1%} -> {end['accuracy']:.1%} | "
            f"{start['signal_means']['preference']:.2f} -> {end['signal_means']['preference']:.2f}"
            f" | {end['win_rate']['win_rate']:.2f} | {start['preferred_style']:.0%} -> "
            f"{end['preferred_style']:.0%} | {verdict} |")


if __name__ == "__main__":
    main()
