"""Side by side: one GRPO step of ours against TRL's GRPOTrainer, same model, prompts, reward
and settings, in alternating blocks; then held-out accuracy after the same wall-clock budget.

    .venv/bin/pip install -e ".[bench]"
    .venv/bin/python bench/trl_grpo_bench.py [--rounds 3] [--steps 8] [--budget-s 120]

Settings shared by both (the issue's): the built-in tiny model after its SFT warm-up, the
arithmetic task, 8 prompts x 4 generations, up to 32 new tokens, temperature 1, beta 0.04
with a frozen reference model, dapo loss, group-scaled advantages, clip 0.2, AdamW lr 5e-5
betas (0.9, 0.99), constant schedule, grad-norm clip 1, no gradient checkpointing, one torch
thread, no vLLM, reward = our math verifier. Each block runs in a fresh child process, so
its peak memory (max RSS) is its own; step times are taken after `--warmup` steps.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

OVERRIDES = [
    "task=math", "trainer.prompts_per_step=8", "trainer.num_generations=4",
    "rollout.max_new_tokens=32", "trainer.beta=0.04", "trainer.loss_type=dapo",
    "trainer.learning_rate=5e-5", "num_threads=1", "logging.progress_bar=false",
    "logging.tensorboard=false", "eval.every_steps=0", "eval.at_start=false",
    "checkpoint.every_steps=0", "checkpoint.save_final=false", "task.data.num_eval=200",
]


def config(extra=()):
    from hydra import compose, initialize_config_dir

    from hybrid_rl.config.schema import register_configs
    from hybrid_rl.recipes import build

    register_configs()
    with initialize_config_dir(str(ROOT / "conf"), version_base=None):
        return build.to_config(compose("config", overrides=OVERRIDES + list(extra)))


# ------------------------------------------------------------------ ours ----
def ours(steps: int, budget_s: float | None, run_dir: Path) -> dict:
    from hybrid_rl.recipes import build
    from hybrid_rl.recipes import grpo as train

    cfg = config(
        [f"trainer.max_steps={steps}"] + ([f"trainer.max_time_s={budget_s}"] if budget_s else [])
    )
    build.seed_everything(cfg.seed, cfg.num_threads)
    run = train.setup(cfg, run_dir)
    times = []
    while not train.finished(run):
        start = time.perf_counter()
        train.train_step(run)  # rollout, rewards, advantages, update, weight sync
        times.append(time.perf_counter() - start)
        run.step += 1
    accuracy = train.evaluate(run) if budget_s else None
    run.scorer.close()
    return {"step_times": times, "accuracy": accuracy}


# ------------------------------------------------------------------- TRL ----
def trl(steps: int, budget_s: float | None, run_dir: Path) -> dict:
    import torch
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from hybrid_rl.evaluation.heldout import heldout_accuracy
    from hybrid_rl.models.loading import load_policy
    from hybrid_rl.recipes import build
    from verifiers.math import verify_math

    cfg = config()
    build.seed_everything(cfg.seed, cfg.num_threads)
    train_samples, held = build.task_samples(cfg)
    location, tokenizer, train_samples, held = build.prepare_start(cfg, train_samples, held)
    scorer = build.build_scorer(cfg, None)
    data = Dataset.from_dict({"prompt": [s.prompt for s in train_samples],
                              "answer": [s.reference for s in train_samples]})

    def correctness(completions, answer, **_):
        return [verify_math(c, a) for c, a in zip(completions, answer)]

    class Clock(TrainerCallback):
        def __init__(self):
            self.times, self.begun, self.training_start = [], None, time.perf_counter()

        def on_step_begin(self, args, state, control, **kw):
            self.begun = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            self.times.append(time.perf_counter() - self.begun)
            if budget_s and time.perf_counter() - self.training_start >= budget_s:
                control.should_training_stop = True

    args = GRPOConfig(
        output_dir=str(run_dir), use_cpu=True, bf16=False, max_steps=steps,
        per_device_train_batch_size=32, num_generations=4, max_completion_length=32,
        temperature=1.0, beta=0.04, loss_type="dapo", scale_rewards="group", epsilon=0.2,
        learning_rate=5e-5, lr_scheduler_type="constant", adam_beta2=0.99, max_grad_norm=1.0,
        gradient_checkpointing=False, num_iterations=1, logging_steps=10_000, save_strategy="no",
        report_to=[], seed=cfg.seed, dataloader_num_workers=0,
    )
    clock = Clock()
    model = load_policy(location)
    trainer = GRPOTrainer(model=model, reward_funcs=correctness, args=args, train_dataset=data,
                          processing_class=tokenizer, callbacks=[clock])
    torch.set_num_threads(1)
    clock.training_start = time.perf_counter()
    trainer.train()
    accuracy = None
    if budget_s:
        rollout = build.build_rollout(cfg, trainer.model, tokenizer)
        accuracy = heldout_accuracy(rollout, held, scorer, cfg.task.accuracy_signal).accuracy
    scorer.close()
    return {"step_times": clock.times, "accuracy": accuracy}


# ---------------------------------------------------------------- driver ----
def child(args) -> None:
    import tempfile

    run_dir = Path(tempfile.mkdtemp(prefix=f"bench-{args.trainer}-"))
    result = (ours if args.trainer == "ours" else trl)(args.steps, args.budget_s, run_dir)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps(result))


def run_child(trainer: str, steps: int, budget_s: float | None) -> dict:
    cmd = [sys.executable, __file__, "--child", trainer, "--steps", str(steps)]
    if budget_s:
        cmd += ["--budget-s", str(budget_s)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{trainer} block failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=8, help="steps per block")
    parser.add_argument("--warmup", type=int, default=2, help="first steps of each block not timed")
    parser.add_argument(
        "--budget-s", type=float, default=120.0, help="wall clock of the accuracy race (0: skip)"
    )
    parser.add_argument("--child", choices=["ours", "trl"])
    parser.add_argument("--trainer", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        args.trainer = args.child
        args.budget_s = args.budget_s if "--budget-s" in sys.argv else None
        return child(args)
    if args.rounds:
        step_times(args)
    if args.budget_s:
        print("\nheld-out accuracy (200 problems, greedy) "
              f"after {args.budget_s:.0f} s of training each:")
        print("| trainer | steps done | held-out accuracy |")
        print("|---|---|---|")
        for name, label in (("trl", "TRL 1.16 GRPOTrainer"), ("ours", "hybrid-rl")):
            result = run_child(name, 1_000_000, args.budget_s)
            print(f"| {label} | {len(result['step_times'])} | {result['accuracy']:.3f} |")


def step_times(args) -> None:
    times, peaks = {"ours": [], "trl": []}, {"ours": [], "trl": []}
    for _ in range(args.rounds):
        for name in ("trl", "ours"):
            result = run_child(name, args.steps, None)
            times[name] += result["step_times"][args.warmup:]
            peaks[name].append(result["peak_rss_mb"])
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"GRPO step, 8 prompts x 4 generations x <=32 tokens, beta 0.04, 1 thread; median of "
          f"{len(times['ours'])} steps each ({args.rounds} alternating blocks of {args.steps}, "
          f"{args.warmup} warm-up steps dropped)")
    print("| trainer | median step (s) | peak RSS (MB) |")
    print("|---|---|---|")
    for name, label in (("ours", "hybrid-rl"), ("trl", "TRL 1.16 GRPOTrainer")):
        print(f"| {label} | {med[name]:.3f} | {max(peaks[name]):.0f} |")
    print(f"step time ratio ours/TRL: {med['ours'] / med['trl']:.2f}")


if __name__ == "__main__":
    main()
