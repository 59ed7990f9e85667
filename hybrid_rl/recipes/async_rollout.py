"""rollout.async_steps > 0 in the GRPO loop (and the recipes that share it: PPO, online DPO,
rejection sampling): the rollout worker's start, each step's batch, the weights it gets after
each update, and what a checkpoint keeps of the batches in flight. README "Asynchronous
rollouts"; the worker itself is hybrid_rl/rollout/async_worker.py.

Every function is a no-op (or returns None / {}) when the run is synchronous, and takes any
object with the Run's fields (tests drive the loop's parts with stand-ins)."""
from __future__ import annotations

import logging
import os
import pickle
import time
from typing import Callable, Optional, Sequence

import torch

from hybrid_rl.config.checks import ConfigError
from hybrid_rl.recipes import build
from hybrid_rl.rollout.async_worker import AsyncRollouts, WeightSlots, WorkerSpec, trainer_gpu
from hybrid_rl.runtime import distributed

log = logging.getLogger("hybrid_rl")


def running(run) -> bool:
    return _of(run) is not None


def _of(run) -> Optional[AsyncRollouts]:
    return getattr(run, "async_rollouts", None)


def trained(module: torch.nn.Module) -> list[tuple[str, torch.Tensor]]:
    """The parameters an update changes (all of them; a LoRA run's adapters only)."""
    return [(name, p) for name, p in module.named_parameters() if p.requires_grad]


def start(run, location: str, state: dict, prompts: Sequence[str]) -> Optional[AsyncRollouts]:
    """Start the worker on the run's current weights (version run.step); on a resume with the
    same async_steps and process count, the batches the checkpoint kept come first."""
    cfg, r = run.cfg, run.cfg.rollout
    if not r.async_steps:
        if state.get("async_rollouts"):
            log.warning("the checkpoint's in-flight batches are not used by a synchronous run; "
                        "it samples those steps' prompts again")
        return None
    from hybrid_rl.plugins import ROLLOUT_BACKENDS, PluginError

    try:  # an unknown backend is the config's error, not a worker that keeps dying
        ROLLOUT_BACKENDS.get(r.backend)
    except PluginError as exc:
        raise ConfigError(f"rollout.backend: {exc}") from exc
    with run.engine.gathered() as module:
        params = trained(module)
        slots = WeightSlots.create(params, r.async_steps + 1)
        slots.publish(run.step, params)
        settings = build.rollout_settings(cfg, module, run.tokenizer, prompts)
    rank = distributed.rank()
    spec = WorkerSpec(
        location, cfg.model.dtype, cfg.model.trust_remote_code,
        cfg.model.lora if cfg.model.lora.enabled else None, run.tokenizer, r.backend, settings,
        cfg.trainer.num_generations,
        {name: task.max_new_tokens for name, task in cfg.tasks().items()},
        run.tokenizer.pad_token_id,
        trainer_gpu(distributed.local_gpu() if torch.cuda.is_available() else None),
        r.worker_threads,
        cfg.seed + rank, os.getpid())
    rollouts = AsyncRollouts(spec, slots, r.async_steps, run.stream, cfg.trainer.prompts_per_step,
                             run.step, r.worker_timeout_s, r.max_worker_restarts,
                             pid_file=str(run.run_dir / f"rollout_worker.rank{rank}.pid"))
    saved = state.get("async_rollouts")
    if saved and (saved["async_steps"], len(saved["in_flight"])) == (
            r.async_steps, distributed.world_size()):
        rollouts.restore(pickle.loads(saved["in_flight"][rank]))
        run.stream.load_state_dict(saved["data_after"])
    elif saved:
        log.warning("the checkpoint's in-flight batches were sampled with async_steps=%d "
                    "on %d processes; this run samples those steps' prompts again",
                    saved["async_steps"], len(saved["in_flight"]))
    return rollouts


def producer(run) -> Optional[Callable[[int], tuple[list, object]]]:
    """sample_groups' source of (prompts, batch) for the coming step, or None (it samples)."""
    rollouts = _of(run)
    if rollouts is None:
        return None

    def produce(prompts_per_step: int):
        step = run.step + 1
        produced, waited = rollouts.take(step)
        run.async_stats = {"rollout/staleness": float(step - 1 - produced.version),
                           "rollout/weight_version": float(produced.version),
                           "rollout/worker_restarts": float(rollouts.restarts),
                           "time/rollout_wait_s": waited,
                           "time/worker_generate_s": produced.seconds}
        return produced.samples, produced.batch

    return produce


def step_metrics(run) -> dict[str, float]:
    """The step's staleness (updates between the sampling weights and the updated ones: 0 when
    synchronous), and, when asynchronous, the worker's figures."""
    if _of(run) is None:
        return {"rollout/staleness": 0.0}
    return dict(run.async_stats)


def behaviour_logprobs(run, batch) -> Optional[torch.Tensor]:
    """The log-probs the update's ratio is taken against: the sampler's own when the batch
    is older than the weights (None: the trainer's, as when synchronous)."""
    return None if _of(run) is None else batch.rollout_logprobs


def publish(run) -> dict[str, float]:
    """After an update: its weights to the worker, as version run.step + 1."""
    start = time.time()
    with run.engine.gathered() as module:
        run.async_rollouts.publish(run.step + 1, trained(module))
    return {"time/weight_sync_s": time.time() - start}


def checkpoint_state(run) -> dict:
    """What a checkpoint keeps (collective: every process calls it): each process's batches
    already sampled for the steps after it, the stream's position after them (`data_after`),
    and as `data` its position before them, where a resume that cannot use them samples again."""
    rollouts = _of(run)
    if rollouts is None:
        return {}
    in_flight = rollouts.finish_in_flight()
    saved = {"async_steps": rollouts.steps_ahead, "data_after": run.stream.state_dict(),
             "in_flight": distributed.gather_objects(pickle.dumps(in_flight))}
    data = in_flight[0][1] if in_flight else run.stream.state_dict()
    return {"data": data, "async_rollouts": saved}


def close(run) -> None:
    if _of(run) is not None:
        run.async_rollouts.close()
