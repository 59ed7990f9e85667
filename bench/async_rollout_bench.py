"""Side by side: asynchronous rollouts (rollout.async_steps=1, 2) against synchronous steps
(async_steps=0), each a fresh `train.py` process given the same seconds of training, then
evaluated on the same held-out problems.

    .venv/bin/python bench/async_rollout_bench.py [--model tiny|smollm2] [--seconds 60]
                                                  [--rounds 1] [--steps 0,1,2]

On a 2-core CPU the synchronous run uses both cores for everything (num_threads=2, the
default); an asynchronous run gives one core to the trainer (num_threads=1) and one to the
rollout worker (rollout.worker_threads=1), as the issue asks. A synchronous variant on one
thread shows what the trainer alone gets from its core, and a last one keeps the defaults (the
trainer on num_threads=2 and the worker on one more thread: three on two cores). Per variant:
the mean and median step (the first excluded: it includes the worker's start), the steps done
in the time, the share of a step spent waiting for samples (synchronous: sampling and scoring;
asynchronous: the wait for the worker's batch), and the held-out accuracy at the end. The
first use of a model trains its warm-up (cached for the next runs).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
QUIET = ["logging.progress_bar=false", "logging.tensorboard=false", "eval.every_steps=0",
         "eval.at_start=false", "checkpoint.every_steps=0", "checkpoint.save_final=false",
         "checkpoint.keep_best=false", "logging.samples_every_steps=0", "trainer.max_steps=100000"]
MODELS = {
    # the default run's model and settings (32 prompts x 8 samples), 500 held-out problems
    "tiny": ["task=math", "task.data.num_eval=500"],
    # SmolLM2-135M-Instruct warmed up (conf/model_task/smollm2_135m_math.yaml), small steps
    "smollm2": ["model=smollm2_135m", "task=math", "trainer.prompts_per_step=4",
                "trainer.num_generations=4", "task.data.num_eval=100"],
}


def variants(steps: list[int]) -> dict[str, list[str]]:
    out = {"sync, 2 threads": ["rollout.async_steps=0", "num_threads=2"],
           "sync, 1 thread": ["rollout.async_steps=0", "num_threads=1"]}
    for n in steps:
        if n:
            out[f"async_steps={n}, 1+1 threads"] = [f"rollout.async_steps={n}", "num_threads=1",
                                                     "rollout.worker_threads=1"]
    if 1 in steps:  # the defaults: the trainer keeps num_threads=2, the worker gets 1 more
        out["async_steps=1, 2+1 threads"] = ["rollout.async_steps=1", "num_threads=2",
                                             "rollout.worker_threads=1"]
    return out


def run(model: str, overrides: list[str], seconds: float, run_dir: Path) -> dict:
    cmd = [sys.executable, str(ROOT / "train.py"), *MODELS[model], *QUIET, *overrides,
           f"trainer.max_time_s={seconds}", f"hydra.run.dir={run_dir}"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "time/step_s" in r]
    final = [r for r in rows if "eval/accuracy" in r][-1]
    later = steps[1:] or steps
    return {"steps": len(steps),
            "mean_step_s": sum(r["time/step_s"] for r in later) / len(later),
            "median_step_s": statistics.median(r["time/step_s"] for r in later),
            "wait_share": statistics.median(r.get("time/rollout_wait_s", r["time/rollout_s"])
                                            / r["time/step_s"] for r in later),
            "staleness": max(r.get("rollout/staleness", 0.0) for r in steps),
            "accuracy": final["eval/accuracy"],
            "accuracy_ci95": [final["eval/accuracy_ci95_low"], final["eval/accuracy_ci95_high"]]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", choices=sorted(MODELS), default="tiny")
    ap.add_argument("--seconds", type=float, default=60.0, help="training seconds per run")
    ap.add_argument("--rounds", type=int, default=1, help="alternating rounds of every variant")
    ap.add_argument("--steps", default="0,1,2", help="async_steps values to compare")
    ap.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = ap.parse_args()
    chosen = variants([int(s) for s in args.steps.split(",")])
    results: dict[str, list[dict]] = {name: [] for name in chosen}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for i, (name, overrides) in enumerate(chosen.items()):
                out = run(args.model, overrides, args.seconds, Path(tmp) / f"round{r}-variant{i}")
                results[name].append(out)
                print(f"round {r + 1} {name}: {out}", flush=True)
    base = statistics.median(x["mean_step_s"] for x in results["sync, 2 threads"])
    print(f"\n{args.model}, {args.seconds:.0f} s of training per run, median of "
          f"{args.rounds} round(s)\n")
    print("| variant | mean step (s) | speed vs sync, 2 threads | median step (s) | steps done "
          "| waiting for samples | max staleness | held-out accuracy |")
    print("|---|---|---|---|---|---|---|---|")
    for name, runs in results.items():
        step = statistics.median(x["mean_step_s"] for x in runs)
        median = statistics.median(x["median_step_s"] for x in runs)
        print(f"| {name} | {step:.3f} | {base / step:.2f}x | {median:.3f} | "
              f"{statistics.median(x['steps'] for x in runs):.0f} | "
              f"{statistics.median(x['wait_share'] for x in runs):.0%} | "
              f"{max(x['staleness'] for x in runs):.0f} | "
              f"{statistics.median(x['accuracy'] for x in runs):.3f} |")
    if args.out:
        args.out.write_text(json.dumps({"model": args.model, "seconds": args.seconds,
                                        "results": results}, indent=1))


if __name__ == "__main__":
    main()
