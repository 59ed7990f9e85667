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
import cProfile
import json
import os
import pstats
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


# --model: the built-in model after its warm-up, or the packaged SmolLM2-135M-Instruct as it
# ships, its prompts in its chat format (a warm-up would make the two trainers' prompts differ).
MODELS = {"tiny": [], "smollm2": ["model=smollm2_135m", "model.warmup_sft=false"]}


def config(race: bool, extra=()):
    from hydra import compose, initialize_config_dir

    from hybrid_rl.config.schema import register_configs
    from hybrid_rl.recipes import build

    register_configs()
    with initialize_config_dir(str(ROOT / "conf"), version_base=None):
        base = QUIET if race else STEP_OVERRIDES
        return build.to_config(compose("config", overrides=base + list(extra)))


# ------------------------------------------------------------------ ours ----
def ours(steps: int | None, budget_s: float | None, run_dir: Path, model: str,
         profile_after: int | None = None) -> dict:
    """Our steps; with `profile_after`, the steps after that many run under cProfile and the
    result says where their time went (BREAKDOWN)."""
    from hybrid_rl.recipes import build
    from hybrid_rl.recipes import grpo as train

    race = budget_s is not None
    cfg = config(race, MODELS[model] + ([f"trainer.max_time_s={budget_s}"] if race else
                                        [f"trainer.max_steps={steps}"]))
    build.seed_everything(cfg.seed, cfg.num_threads)
    run = train.setup(cfg, run_dir)
    times, profiler = [], cProfile.Profile()
    while not train.finished(run):
        profiling = profile_after is not None and len(times) >= profile_after
        profiler.enable() if profiling else None
        start = time.perf_counter()
        train.train_step(run)  # rollout, rewards, advantages, update, weight sync
        times.append(time.perf_counter() - start)
        profiler.disable() if profiling else None
        run.step += 1
    accuracy = train.evaluate(run) if budget_s else None
    run.scorer.close()
    result = {"step_times": times, "accuracy": accuracy}
    if profile_after is not None:
        result["breakdown"] = breakdown(profiler, times[profile_after:])
    return result


# Where a step's time goes: (file, function) whose cumulative time is the piece's. The policy
# pass is its whole update minus the backward and optimizer steps inside it.
BREAKDOWN = {
    "sampling": ("rollout/token_sampler.py", "sample"),
    "reference pass (while the verifier pool scores)": ("algo/update.py", "reference_logprobs"),
    "policy update": ("algo/update.py", "grpo_update"),
    "backward": ("runtime/engine.py", "backward"),
    "optimizer": ("runtime/engine.py", "step"),
}


def breakdown(profiler: cProfile.Profile, step_times: list[float]) -> dict[str, float]:
    """Seconds per step of each BREAKDOWN piece, the policy forward and the rest."""
    stats = pstats.Stats(profiler).stats  # (file, line, function) -> (..., cumulative, callers)
    per_step = {name: 0.0 for name in BREAKDOWN}
    for (file, _, function), (*_, cumulative, _) in stats.items():
        for name, (suffix, wanted) in BREAKDOWN.items():
            if function == wanted and file.endswith(suffix):
                per_step[name] += cumulative / len(step_times)
    update = per_step.pop("policy update")
    per_step["policy forward and loss"] = update - per_step["backward"] - per_step["optimizer"]
    per_step["rest (scoring wait, advantages, bookkeeping)"] = (
        statistics.mean(step_times) - sum(per_step.values()))
    return per_step


# ------------------------------------------------------------------- TRL ----
def trl(steps: int | None, budget_s: float | None, run_dir: Path, model: str) -> dict:
    import torch
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from hybrid_rl.evaluation.heldout import heldout_accuracy
    from hybrid_rl.models.loading import load_policy
    from hybrid_rl.recipes import build
    from verifiers.math import verify_math

    cfg = config(budget_s is not None, MODELS[model])
    t, r = cfg.trainer, cfg.rollout
    build.seed_everything(cfg.seed, cfg.num_threads)
    raw_samples, held = build.task_samples(cfg)
    location, tokenizer, train_samples, held = build.prepare_start(cfg, raw_samples, held)
    scorer = build.build_scorer(cfg, None)
    # A chat model's prompts go to TRL as conversations, so it applies the chat template itself.
    prompts = ([[{"role": "user", "content": s.prompt}] for s in raw_samples]
               if cfg.model.chat_template else [s.prompt for s in train_samples])
    data = Dataset.from_dict({"prompt": prompts, "answer": [s.reference for s in raw_samples]})

    def correctness(prompts, completions, answer, **_):
        text = lambda x: x if isinstance(x, str) else x[-1]["content"]  # noqa: E731 (chat)
        return [verify_math(text(c), a, prompt=text(p))
                for p, c, a in zip(prompts, completions, answer)]

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
    if args.trainer == "ours":
        result = ours(steps, args.budget_s, run_dir, args.model, args.profile_after)
    else:
        result = trl(steps, args.budget_s, run_dir, args.model)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps(result))


def start_child(trainer: str, steps: int | None, budget_s: float | None,
                model: str = "tiny", profile_after: int | None = None) -> subprocess.Popen:
    cmd = [sys.executable, __file__, "--child", trainer, "--model", model]
    cmd += ["--profile-after", str(profile_after)] if profile_after is not None else []
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


def run_child(trainer: str, steps: int, model: str) -> dict:
    return child_result(trainer, start_child(trainer, steps, None, model))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=8, help="steps per block")
    parser.add_argument("--warmup", type=int, default=2, help="first steps of each block not timed")
    parser.add_argument(
        "--budget-s", type=float, default=600.0, help="wall clock of the accuracy race (0: skip)"
    )
    parser.add_argument("--model", choices=sorted(MODELS), default="tiny",
                        help="the step rounds' model (the race runs the default recipe: tiny)")
    parser.add_argument("--breakdown", action="store_true",
                        help="after the rounds, one more block of ours under a profiler: where "
                             "its step time goes")
    parser.add_argument("--child", choices=["ours", "trl"])
    parser.add_argument("--profile-after", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--trainer", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.budget_s and args.model != "tiny" and not args.child:
        parser.error("the accuracy race runs task=math's default recipe: add --budget-s 0")
    if args.child:
        args.trainer = args.child
        args.budget_s = args.budget_s if "--budget-s" in sys.argv else None
        return child(args)
    if args.rounds:
        step_times(args)
    if args.breakdown:
        where_the_time_goes(args)
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
            result = run_child(name, args.steps, args.model)
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


def where_the_time_goes(args) -> None:
    proc = start_child("ours", args.steps, None, args.model, profile_after=args.warmup)
    pieces = child_result("ours", proc)["breakdown"]
    print(f"\nwhere our step's time goes ({args.model}; one profiled block of {args.steps} steps, "
          f"{args.warmup} not timed; the profiler adds a little to each piece)")
    print("| piece | seconds per step |")
    print("|---|---|")
    for name, seconds in pieces.items():
        print(f"| {name} | {seconds:.3f} |")


if __name__ == "__main__":
    main()
