"""Side by side: one GRPO step of ours against TRL's GRPOTrainer, same model, prompts, reward
and settings, in alternating blocks; then an accuracy race of the two on the default recipe.

    .venv/bin/pip install -e ".[bench]"
    .venv/bin/python bench/trl_grpo_bench.py [--rounds 3] [--steps 8] [--budget-s 600]

Step rounds (the speed target's settings): the built-in tiny model after its SFT warm-up, the
arithmetic task, 8 prompts x 4 generations, up to 32 new tokens, temperature 1, beta 0.04
with a frozen reference model, dapo loss, group-scaled advantages, clip 0.2, AdamW lr 5e-5
betas (0.9, 0.99), constant schedule, grad-norm clip 1, no gradient checkpointing, one torch
thread, no vLLM, reward = our math verifier. Each block runs in a fresh child process, so
its peak memory (max RSS) is its own; step times are taken after `--warmup` steps.

Accuracy race: both trainers get `python train.py task=math`'s own settings (batch, group,
tokens, learning rate and its warm-up and cosine schedule over the default max_steps, KL,
clip, loss), read from the config rather than repeated here, and the same wall-clock budget;
they run at the same time, one thread each, and are scored by the same greedy evaluation on
the task's held-out problems.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

QUIET = [
    "task=math", "num_threads=1", "logging.progress_bar=false", "logging.tensorboard=false",
    "eval.every_steps=0", "eval.at_start=false", "checkpoint.every_steps=0",
    "checkpoint.save_final=false",
]
# The step rounds' settings; the race adds nothing to QUIET, so it runs the task's defaults.
STEP_OVERRIDES = QUIET + [
    "trainer.prompts_per_step=8", "trainer.num_generations=4", "rollout.max_new_tokens=32",
    "trainer.beta=0.04", "trainer.loss_type=dapo", "trainer.learning_rate=5e-5",
    "trainer.lr_schedule=constant", "trainer.warmup_steps=0", "task.data.num_eval=200",
]


def config(race: bool, extra=()):
    from hydra import compose, initialize_config_dir

    from hybrid_rl.config.schema import register_configs
    from hybrid_rl.recipes import build

    register_configs()
    with initialize_config_dir(str(ROOT / "conf"), version_base=None):
        base = QUIET if race else STEP_OVERRIDES
        return build.to_config(compose("config", overrides=base + list(extra)))


# ------------------------------------------------------------------ ours ----
def ours(steps: int | None, budget_s: float | None, run_dir: Path) -> dict:
    from hybrid_rl.recipes import build
    from hybrid_rl.recipes import grpo as train

    race = budget_s is not None
    cfg = config(race, [f"trainer.max_time_s={budget_s}"] if race else
                 [f"trainer.max_steps={steps}"])
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
def trl(steps: int | None, budget_s: float | None, run_dir: Path) -> dict:
    import torch
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from hybrid_rl.evaluation.heldout import heldout_accuracy
    from hybrid_rl.models.loading import load_policy
    from hybrid_rl.recipes import build
    from verifiers.math import verify_math

    cfg = config(budget_s is not None)
    t, r = cfg.trainer, cfg.rollout
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
        output_dir=str(run_dir), use_cpu=True, bf16=False, max_steps=steps or t.max_steps,
        per_device_train_batch_size=t.prompts_per_step * t.num_generations,
        num_generations=t.num_generations, max_completion_length=r.max_new_tokens,
        temperature=r.temperature, beta=t.beta, loss_type=t.loss_type,
        scale_rewards=t.advantage_scale, epsilon=t.epsilon, epsilon_high=t.epsilon_high,
        learning_rate=t.learning_rate,
        lr_scheduler_type=t.lr_schedule, warmup_steps=t.warmup_steps, adam_beta1=t.adam_betas[0],
        adam_beta2=t.adam_betas[1], weight_decay=t.weight_decay, max_grad_norm=t.max_grad_norm,
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
    run_dir = Path(tempfile.mkdtemp(prefix=f"bench-{args.trainer}-"))
    steps = None if args.budget_s else args.steps  # a race runs the default max_steps
    result = (ours if args.trainer == "ours" else trl)(steps, args.budget_s, run_dir)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps(result))


def start_child(trainer: str, steps: int | None, budget_s: float | None) -> subprocess.Popen:
    cmd = [sys.executable, __file__, "--child", trainer]
    cmd += ["--budget-s", str(budget_s)] if budget_s else ["--steps", str(steps)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    # files, not pipes: two children run at once, and a full pipe would stall the one not read
    out, err = tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=err, text=True)
    proc.output = (out, err)
    return proc


def child_result(trainer: str, proc: subprocess.Popen) -> dict:
    proc.wait()
    stdout, stderr = (f.seek(0) or f.read() for f in proc.output)
    lines = [line for line in stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{trainer} block failed:\n{stdout[-2000:]}\n{stderr[-4000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def run_child(trainer: str, steps: int) -> dict:
    return child_result(trainer, start_child(trainer, steps, None))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=8, help="steps per block")
    parser.add_argument("--warmup", type=int, default=2, help="first steps of each block not timed")
    parser.add_argument(
        "--budget-s", type=float, default=600.0, help="wall clock of the accuracy race (0: skip)"
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
        race(args.budget_s)


def race(budget_s: float) -> None:
    """Both trainers on the default recipe at once, one thread each, for the same wall clock."""
    labels = {"trl": "TRL 1.16 GRPOTrainer", "ours": "hybrid-rl"}
    procs = {name: start_child(name, None, budget_s) for name in labels}
    results = {name: child_result(name, proc) for name, proc in procs.items()}
    print(f"\naccuracy race: task=math's defaults for both, {budget_s:.0f} s of training each, "
          "run at the same time with one thread each; greedy held-out evaluation")
    print("| trainer | steps done | median step (s) | held-out accuracy |")
    print("|---|---|---|---|")
    for name, label in labels.items():
        res = results[name]
        print(f"| {label} | {len(res['step_times'])} | "
              f"{statistics.median(res['step_times']):.3f} | {res['accuracy']:.3f} |")


def step_times(args) -> None:
    times, peaks = {"ours": [], "trl": []}, {"ours": [], "trl": []}
    for _ in range(args.rounds):
        for name in ("trl", "ours"):
            result = run_child(name, args.steps)
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
