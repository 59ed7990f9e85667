"""Side by side: what the learned reward adds to a GRPO step. `task=math_hybrid` (the verifier
plus the reward model's gated preference) against `task=math` (the verifier alone), each on
the built-in model after the same length of warm-up (1,500 steps) and with its own default
settings (32 prompts x 8 samples), in alternating blocks of fresh processes.

    .venv/bin/python bench/hybrid_step_bench.py [--rounds 3] [--steps 12] [--warmup 2]

A third variant, `math_hybrid` with `reward.gate_failures_scored=1`, has the reward model
score every completion (the default scores what can change the reward: right answers where a
group has two different ones, and every completion of a quarter of the groups for the hacking
watch). Per variant: the median step, the reward model's share of it, how many distinct
(prompt, completion) pairs it ran on per step (of 256), and the step's accuracy (the share of
completions that passed the gate). The first use trains each task's warm-up and the default
reward model (about 13 minutes in all on 2 cores); later runs take them from the cache.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

QUIET = ["logging.progress_bar=false", "logging.tensorboard=false", "eval.every_steps=0",
         "eval.at_start=false", "checkpoint.every_steps=0", "checkpoint.save_final=false"]
VARIANTS = {
    "math": ["task=math"],
    "math_hybrid": ["task=math_hybrid"],
    "math_hybrid, every completion scored": ["task=math_hybrid", "reward.gate_failures_scored=1"],
}


def block(variant: str, steps: int, warmup: int) -> dict:
    """One block of steps in this process: step times, reward-model seconds and pairs."""
    from hydra import compose, initialize_config_dir

    from hybrid_rl.config.schema import register_configs
    from hybrid_rl.recipes import build
    from hybrid_rl.recipes import grpo as train
    from hybrid_rl.rewards.learned.model import RewardModel

    register_configs()
    with initialize_config_dir(str(ROOT / "conf"), version_base=None):
        cfg = build.to_config(compose("config", overrides=VARIANTS[variant] + QUIET + [
            f"trainer.max_steps={steps}"]))
    spent = {"seconds": 0.0, "pairs": 0}
    score = RewardModel.score

    def timed_score(self, prompts, responses, batch_size=128):
        start = time.perf_counter()
        try:
            return score(self, prompts, responses, batch_size)
        finally:
            spent["seconds"] += time.perf_counter() - start
            spent["pairs"] += len(dict.fromkeys(zip(prompts, responses)))

    RewardModel.score = timed_score
    build.seed_everything(cfg.seed, cfg.num_threads)
    run = train.setup(cfg, Path(tempfile.mkdtemp(prefix="bench-hybrid-")))
    rows = []
    while not train.finished(run):
        spent.update(seconds=0.0, pairs=0)
        start = time.perf_counter()
        metrics = train.train_step(run)
        rows.append({"step_s": time.perf_counter() - start, "rm_s": spent["seconds"],
                     "rm_pairs": spent["pairs"], "accuracy": metrics["accuracy"]})
        run.step += 1
    run.scorer.close()
    return {"rows": rows[warmup:]}


def run_block(variant: str, steps: int, warmup: int) -> dict:
    cmd = [sys.executable, __file__, "--child", variant, "--steps", str(steps),
           "--warmup", str(warmup)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{variant} block failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=12, help="steps per block")
    parser.add_argument("--warmup", type=int, default=2, help="first steps of a block not timed")
    parser.add_argument("--child", choices=sorted(VARIANTS))
    args = parser.parse_args()
    if args.child:
        print("RESULT " + json.dumps(block(args.child, args.steps, args.warmup)))
        return
    rows = {variant: [] for variant in VARIANTS}
    for _ in range(args.rounds):
        for variant in VARIANTS:
            rows[variant] += run_block(variant, args.steps, args.warmup)["rows"]
    base = statistics.median(r["step_s"] for r in rows["math"])
    print(f"GRPO step on the built-in model, each task's defaults; median of {len(rows['math'])} "
          f"steps each ({args.rounds} alternating blocks of {args.steps}, {args.warmup} "
          "warm-up steps dropped)")
    print("| variant | median step (s) | vs task=math | reward model (s a step) | "
          "pairs it scored a step | accuracy (gate passed) |")
    print("|---|---|---|---|---|---|")
    for variant, got in rows.items():
        step = statistics.median(r["step_s"] for r in got)
        print(f"| {variant} | {step:.3f} | {step / base:.2f}x | "
              f"{statistics.median(r['rm_s'] for r in got):.3f} | "
              f"{statistics.median(r['rm_pairs'] for r in got):.0f} | "
              f"{statistics.mean(r['accuracy'] for r in got):.1%} |")


if __name__ == "__main__":
    main()
