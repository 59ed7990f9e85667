"""GRPO training, the recipe behind `python train.py task=math` (README "GRPO").

Reads top to bottom: set-up, one loop (rollout -> rewards -> advantages -> update), wrap-up.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from omegaconf import DictConfig
from tqdm import tqdm

from hybrid_rl.algo.optim import make_scheduler
from hybrid_rl.algo.update import NonFiniteLoss, UpdateSettings, grpo_update, reference_logprobs
from hybrid_rl.config.schema import Config
from hybrid_rl.data.mixture import MixedPromptStream
from hybrid_rl.data.samples import PromptStream
from hybrid_rl.evaluation.heldout import heldout_accuracy, sampled_pass_at_k, wilson_interval
from hybrid_rl.recipes import async_rollout, build, watches
from hybrid_rl.recipes.advantages import batch_advantages, update_settings
from hybrid_rl.recipes.reward_model import prepare_reward_model
from hybrid_rl.recipes.run_report import closing_summary, eval_metrics, pooled, summary
from hybrid_rl.rewards.composition import RewardComposer
from hybrid_rl.rollout import completion_limit
from hybrid_rl.rollout.scored_groups import (
    rollout_metrics,
    sample_groups,
    sample_rows,
    task_metrics,
)
from hybrid_rl.runtime import distributed
from hybrid_rl.runtime.checkpoint import (
    load_trainer_state,
    resolve_resume,
    restore_rng_for_rank,
    rng_state,
    save_best_policy,
    save_checkpoint,
)
from hybrid_rl.runtime.engine import make_engine
from hybrid_rl.runtime.metrics import MetricsWriter, plot_training
from hybrid_rl.runtime.preemption import Preemption

log = logging.getLogger("hybrid_rl")


@dataclass(frozen=True)
class Loop:
    """What a recipe that runs this loop supplies (train.py: GRPO_LOOP; dpo.py its own)."""

    label: str  # the progress bar's name
    step: Callable[["Run"], dict]  # one training step -> its metrics
    # (cfg, starting model folder, tokenizer, training samples) -> the resumable training stream
    stream: Callable[..., object]
    with_reference: Callable[[Config], bool]  # whether the frozen starting model is loaded
    evaluate: Callable[["Run"], dict]  # metrics of its own at each held-out evaluation
    # (run, starting model folder, reward-model folder or None, checkpoint state or {}): builds
    # what the recipe trains beside the policy (PPO's critic) into run.extras, restored on resume
    setup: Callable[..., None] | None = None
    state: Callable[["Run"], dict] | None = None  # that part's checkpoint state (all processes)


@dataclass
class Run:
    """Everything the loop touches, built once by `setup`."""

    cfg: Config
    run_dir: Path
    policy: torch.nn.Module
    reference: torch.nn.Module | None
    tokenizer: object
    rollout: object
    scorer: object
    composer: RewardComposer
    # hybrid_rl/runtime/engine.py: TorchEngine (one process) or ZeroEngine (DeepSpeed)
    engine: object
    scheduler: object
    stream: PromptStream | MixedPromptStream
    held: list
    metrics: MetricsWriter
    settings: UpdateSettings
    step: int = 0  # last completed step
    elapsed: float = 0.0  # seconds spent in training steps (survives resume)
    start_accuracy: float | None = None
    nonfinite_in_a_row: int = 0  # consecutive updates skipped for NaN/inf
    # task -> its watch of held-out proxy score vs verified accuracy (tasks with both signals)
    watches: dict = field(default_factory=dict)
    # task -> its watch of a reward-model ensemble's disagreement on the policy's samples
    disagreement_watches: dict = field(default_factory=dict)
    stop_reason: str | None = None  # set when the hacking watch ends training
    best: dict | None = None  # the best held-out evaluation: step, accuracy, num_problems
    eval_problems: int = 0  # held-out problems the accuracy signal scored, last evaluation
    loop: Loop | None = None  # the recipe's step and data (None: GRPO)
    extras: dict = field(default_factory=dict)  # what loop.setup built (PPO: the critic)
    # rollout.async_steps > 0: the rollout worker's trainer end (hybrid_rl/recipes/async_rollout.py)
    async_rollouts: object = None
    async_stats: dict = field(default_factory=dict)  # the worker's figures for this step


def setup(cfg: Config, run_dir: Path, loop: Loop | None = None) -> Run:
    """Data, starting model (SFT warm-up if configured), rewards, rollouts, optimizer; resume."""
    t, loop = cfg.trainer, loop or GRPO_LOOP
    # Verifiers first: an unknown name fails before minutes of data and model work, and the
    # worker processes fork from a small process, before any model is loaded.
    scorer, composer = build.build_scorer(cfg, run_dir), build.build_composer(cfg)
    train, held = build.task_samples(cfg)
    with distributed.main_process_first():  # rank 0 fills the caches, the others reuse them
        location, tokenizer, train, held = build.prepare_start(cfg, train, held)
        reward_model = prepare_reward_model(cfg, location, tokenizer, train, scorer)
    ckpt = resolve_resume(cfg.checkpoint.resume, run_dir)
    state = load_trainer_state(ckpt) if ckpt else {}
    policy, reference = build.load_models(cfg, location, str(ckpt / "policy") if ckpt else None,
                                          with_reference=loop.with_reference(cfg))
    optimizer = build.make_policy_optimizer(cfg, policy)
    scheduler = make_scheduler(optimizer, t.lr_schedule, t.warmup_steps, t.optimizer_steps())
    engine = make_engine(policy, optimizer, scheduler, deepspeed=build.deepspeed_settings(cfg),
                         micro_batch_size=t.micro_batch_size, max_grad_norm=t.max_grad_norm)
    run = Run(
        cfg, run_dir, engine.module, build.shard_reference(cfg, reference), tokenizer,
        build.build_rollout(cfg, engine.module, tokenizer, gather=engine.gathered,
                            prompts=[s.prompt for s in train + held]), scorer,
        composer, engine, scheduler,
        loop.stream(cfg, location, tokenizer, train), held,
        build.metrics_writer(cfg, run_dir, state.get("step") if ckpt else None),
        update_settings(cfg),
        loop=loop,
    )
    run.watches = watches.hacking_watches(cfg)
    run.disagreement_watches = watches.disagreement_watches(cfg, scorer)
    if loop.setup is not None:  # before the seeding: what it builds draws no run's numbers
        loop.setup(run, location, reward_model, state)
    # Re-seed here: whether the SFT warm-up ran or came from the cache must not change the run.
    # Each process samples with its own seed (in one process: cfg.seed itself).
    build.seed_everything(cfg.seed + distributed.rank(), cfg.num_threads)
    if ckpt:
        run.engine.load_optimizer_state(state["optimizer"])
        run.scheduler.load_state_dict(state["scheduler"])
        run.stream.load_state_dict(state["data"])
        restore_rng_for_rank(state, distributed.rank())
        run.step, run.elapsed, run.start_accuracy = (
            state["step"], state["elapsed_s"], state["start_accuracy"],
        )
        run.composer.load_state_dict(state.get("composer", {}))
        run.best = state.get("best")
        watches.restore(run, state)
        log.info("resumed from %s at step %d", ckpt, run.step)
    run.async_rollouts = async_rollout.start(run, location, state,
                                             [s.prompt for s in train + held])
    build.report_isolation(run.scorer, run.metrics, run.step)
    # ZeRO-3 shards hold ds_numel
    n_params = sum(getattr(p, "ds_numel", p.numel()) for p in run.policy.parameters())
    log.info("policy %s (%.2fM parameters) from %s; %s; run folder %s", cfg.model.name,
             n_params / 1e6, location, "no reference model" if run.reference is None else
             f"reference: {getattr(run.reference, 'description', 'the frozen starting model')}",
             run_dir)
    return run


def evaluate(run: Run) -> float:
    """Greedy held-out accuracy of each task by its accuracy signal (a mixture logs each task
    under eval/<task>/ and all its problems pooled under eval/); returns the (pooled) figure."""
    e, tasks, mixed = run.cfg.eval, run.cfg.tasks(), run.cfg.mixed
    held = build.by_task(run.held)
    metrics, results = {}, {}
    for name, task in tasks.items():
        prefix, label = (f"eval/{name}", f"{name} ") if mixed else ("eval", "")
        with completion_limit(run.rollout, task.max_new_tokens):
            res = results[name] = heldout_accuracy(run.rollout, held[name], run.scorer,
                                                   task.accuracy_signal, e.batch_size)
            metrics.update(eval_metrics(prefix, res))
            if e.samples_per_prompt:
                passes = sampled_pass_at_k(run.rollout, held[name], run.scorer,
                                           task.accuracy_signal, e.samples_per_prompt, e.pass_k,
                                           e.batch_size)
                metrics.update({f"{prefix}/pass@{k}": v for k, v in passes.items()})
                log.info("step %d %sheld-out sampled %s", run.step, label,
                         ", ".join(f"pass@{k} {v:.3f}" for k, v in passes.items()))
        ex = res.examples[0]
        log.info("step %d %sheld-out accuracy %.3f [%.3f, %.3f] (%d problems, 95%% interval), "
                 "e.g. %r -> %r", run.step, label, res.accuracy,
                 metrics[f"{prefix}/accuracy_ci95_low"], metrics[f"{prefix}/accuracy_ci95_high"],
                 res.num_scored, ex["prompt"][-40:], ex["completion"][:60])
    accuracy, scored = pooled(results.values())
    if mixed:
        low, high = wilson_interval(accuracy, scored)
        metrics.update({"eval/accuracy": accuracy, "eval/accuracy_ci95_low": low,
                        "eval/accuracy_ci95_high": high})
    run.eval_problems = scored
    metrics.update(run.loop.evaluate(run) if run.loop else {})
    run.metrics.log(run.step, metrics)
    keep_if_best(run, accuracy, scored)
    proxy = run.cfg.reward.hacking_watch.proxy_signal
    for name, watch in run.watches.items():
        per_problem = results[name].per_problem
        watches.watch_for_hacking(run, name, per_problem[proxy],
                          per_problem[tasks[name].accuracy_signal])
    return accuracy


def keep_if_best(run: Run, accuracy: float, num_problems: int) -> None:
    """Remember a new best held-out accuracy and save its policy as checkpoints/best
    (collective under DeepSpeed: every process takes rank 0's decision, rank 0 writes)."""
    better = not math.isnan(accuracy) and (run.best is None or accuracy > run.best["accuracy"])
    if not distributed.broadcast_object(better):
        return
    run.best = {"step": run.step, "accuracy": accuracy, "num_problems": num_problems}
    if not run.cfg.checkpoint.keep_best:
        return
    weights = run.engine.full_state_dict()
    if distributed.is_main():
        save_best_policy(run.run_dir, policy=run.policy, tokenizer=run.tokenizer, info=run.best,
                         policy_state=weights)
    distributed.barrier()


def save(run: Run) -> None:
    extra = {"data": run.stream.state_dict(), "elapsed_s": run.elapsed,
             "start_accuracy": run.start_accuracy, "composer": run.composer.state_dict(),
             **watches.watches_state(run), "best": run.best,
             "world_size": distributed.world_size(),
             **(run.loop.state(run) if run.loop and run.loop.state else {}),
             **async_rollout.checkpoint_state(run)}  # collective
    # Full weights and optimizer state in one portable layout (collective under DeepSpeed):
    # a checkpoint from N processes resumes in one, and back.
    weights, optimizer_state = run.engine.full_state_dict(), run.engine.optimizer_state()
    rngs = distributed.gather_objects(rng_state())  # each process's own generators
    if distributed.is_main():
        path = save_checkpoint(run.run_dir, run.step, policy=run.policy, tokenizer=run.tokenizer,
                               optimizer=optimizer_state, scheduler=run.scheduler, state=extra,
                               keep_last=run.cfg.checkpoint.keep_last, policy_state=weights,
                               rng_per_rank=rngs)
        log.info("saved checkpoint %s", path)
    distributed.barrier()


def train_step(run: Run) -> dict[str, float]:
    """Rollout -> rewards -> advantages -> policy update; returns the step's metrics."""
    cfg, t = run.cfg, run.cfg.trainer
    t0 = time.time()
    scored, m = scored_rollout(
        run, dynamic_sampling=t.dynamic_sampling, max_fill_rounds=t.max_fill_rounds,
        # The KL term's reference pass runs while the verifier pool scores (two cores busy)
        reference_logprobs=(lambda batch: reference_logprobs(run.reference, batch, run.settings))
        if run.reference is not None and t.beta else None)
    t1 = time.time()
    batch, reward = scored.batch, scored.reward
    adv = reward
    if len(batch):
        adv = batch_advantages(run, batch, reward)
        m.update(guarded_update(run, batch, adv))
        m.update(sync_rollout_weights(run))
    else:  # dynamic sampling left no group with signal: nothing to learn from this step
        log.warning("step %d: every group had equal rewards; no update", run.step + 1)
    t2 = time.time()
    run.elapsed += t2 - t0
    m.update({"lr": run.scheduler.get_last_lr()[0], "time/step_s": t2 - t0,
              "time/rollout_s": t1 - t0, "time/update_s": t2 - t1,
              "throughput/tokens_per_s": batch.completion_mask.sum().item() / (t2 - t0)})
    if every(cfg.logging.samples_every_steps, run.step + 1):
        run.metrics.log_samples(run.step + 1, sample_rows(scored, adv, cfg.logging.num_samples))
    return m


def scored_rollout(run: Run, **sampling) -> tuple:
    """(the step's scored groups, their metrics): trainer.prompts_per_step prompts x
    trainer.num_generations completions, each scored by its own task's signals; a verifier
    that failed or timed out is said on the console every step it happens."""
    cfg, t = run.cfg, run.cfg.trainer
    tasks = cfg.tasks()
    scored = sample_groups(
        run.stream, run.rollout, run.scorer, run.composer, prompts_per_step=t.prompts_per_step,
        group_size=t.num_generations, pad_token_id=run.tokenizer.pad_token_id,
        completion_limits={name: task.max_new_tokens for name, task in tasks.items()},
        produce=async_rollout.producer(run), **sampling)
    for name, recorded in scored.recorded.items():
        if recorded:  # loud: the console says so every step it happens, the file has the samples
            log.warning("step %d: verifier %r: %d checks failed, %d timed out (%d recorded in %s)",
                        run.step + 1, name, scored.errors[name], scored.timeouts.get(name, 0),
                        recorded, cfg.reward.failures_file)
    m = rollout_metrics(scored, next(iter(tasks.values())).accuracy_signal,
                        cfg.reward.hacking_watch.proxy_signal, t.num_generations)
    if cfg.mixed:
        m.update(task_metrics(scored, {n: task.accuracy_signal for n, task in tasks.items()},
                              t.num_generations))
    m.update(async_rollout.step_metrics(run))
    return scored, m


def sync_rollout_weights(run: Run) -> dict[str, float]:
    """Push the new weights into a rollout engine that keeps its own copy (vLLM); it raises on
    a failed or partial sync, so training never goes on sampling from stale weights. Returns
    the sync's cost in seconds (time/weight_sync_s), nothing for engines without a copy.
    Asynchronous rollouts: the weights go to the rollout worker as the next version."""
    if async_rollout.running(run):
        return async_rollout.publish(run)
    if not getattr(run.rollout, "copies_weights", False):
        return {}
    start = time.time()
    with run.engine.gathered() as module:
        run.rollout.sync_weights(module)
    return {"time/weight_sync_s": time.time() - start}


class NonFiniteTraining(RuntimeError):
    """Too many consecutive updates had a NaN or infinite loss or gradient."""


def guarded_update(run: Run, batch, adv) -> dict[str, float]:
    """The GRPO update, skipped (and counted) when its loss or gradient is not finite."""
    return skip_nonfinite(run, lambda: grpo_update(
        run.engine, run.reference, batch, adv, run.settings,
        old_logprobs=async_rollout.behaviour_logprobs(run, batch)))


def skip_nonfinite(run: Run, update: Callable[[], dict]) -> dict[str, float]:
    """`update()`'s statistics; a NonFiniteLoss (nothing applied) is counted and skipped, and
    more than trainer.max_nonfinite_steps in a row end the run with a clear error."""
    try:
        stats = update()
    except NonFiniteLoss as exc:
        run.nonfinite_in_a_row += 1
        log.warning("step %d: %s (%d in a row)", run.step + 1, exc, run.nonfinite_in_a_row)
        if run.nonfinite_in_a_row > run.cfg.trainer.max_nonfinite_steps:
            raise NonFiniteTraining(
                f"{run.nonfinite_in_a_row} consecutive updates had a non-finite loss or gradient "
                f"(> trainer.max_nonfinite_steps={run.cfg.trainer.max_nonfinite_steps}); "
                f"last: {exc}. Lower trainer.learning_rate or check the rewards.") from exc
        return {"skipped_nonfinite": 1.0}
    run.nonfinite_in_a_row = 0
    return {**stats, "skipped_nonfinite": 0.0}


def finished(run: Run) -> bool:
    t = run.cfg.trainer
    done = (run.step >= t.max_steps or (t.max_time_s is not None and run.elapsed >= t.max_time_s)
            or run.stop_reason is not None)
    return distributed.broadcast_object(done)  # clocks differ between processes: rank 0 decides


def every(n: int, step: int) -> bool:
    return n > 0 and step % n == 0


def main(dcfg: DictConfig, loop: Loop | None = None) -> float:
    started = time.time()
    loop = loop or GRPO_LOOP
    build.start_processes(dcfg)
    cfg, run_dir = build.start_run(dcfg)
    run = setup(cfg, run_dir, loop)
    t = cfg.trainer
    if run.start_accuracy is None and cfg.eval.at_start:
        run.start_accuracy = evaluate(run)

    # disable=None: tqdm draws only on a terminal, so logs and CI output stay readable.
    draw = cfg.logging.progress_bar and distributed.is_main()
    bar = tqdm(total=t.max_steps, initial=run.step, desc=loop.label,
               disable=None if draw else True)
    preempted = Preemption().install()  # a scheduler's warning: checkpoint, then requeue
    while not finished(run):
        m = distributed.mean_over_ranks(loop.step(run))
        run.step += 1
        m.update(watches.watch_disagreement(run, m))
        bar.update(1)
        bar.set_postfix({short: f"{m[key]:.3f}" for key, short in PROGRESS.items() if key in m})
        if every(cfg.logging.every_steps, run.step):
            run.metrics.log(run.step, m)
        last = finished(run)
        if every(cfg.eval.every_steps, run.step) and not last:  # the last step is evaluated below
            evaluate(run)
            last = finished(run)  # the hacking watch may have ended the run
        if preempted.requested() or every(cfg.checkpoint.every_steps, run.step) or \
                (last and cfg.checkpoint.save_final):
            save(run)
            preempted.exit_if_requested(run.step)
    bar.close()

    final = evaluate(run)
    async_rollout.close(run)
    run.scorer.close()
    plot = plot_training(run_dir) if distributed.is_main() else None
    run.metrics.close(plot, closing_summary(run, final))
    if run.stop_reason:
        log.error("stopped early: %s", run.stop_reason)
    log.info("%s", summary(run, final, plot, time.time() - started))
    distributed.shutdown()
    return final


# the progress bar's figures, where a step has them
PROGRESS = {"reward/total/mean": "reward", "accuracy": "acc", "loss": "loss"}
GRPO_LOOP = Loop("GRPO", train_step, lambda cfg, location, tokenizer, train:
                 build.prompt_stream(cfg, train), lambda cfg: cfg.trainer.beta > 0,
                 lambda run: {})
