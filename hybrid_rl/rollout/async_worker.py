"""Asynchronous rollouts: a worker process samples the next steps' batches while the trainer
updates on this one (README "Asynchronous rollouts").

The trainer draws each step's prompts in order and sends them as a Request that names the
weight version to sample with: the weights exactly `steps_ahead` updates older than those the
step's update starts from (newer only at the start of a run or a resume, where no older
exist). Weights travel through WeightSlots: steps_ahead + 1 versions in shared memory, enough
that the worker always finds the version a request names and the trainer never overwrites one
that an unfinished request still needs. Batches come back pickled on a queue, and every worker
incarnation gets fresh queues, so a worker killed mid-message leaves nothing half-read behind.

A batch depends only on its prompts, its weight version and its seed. So a worker that dies is
restarted and sent its requests again with the same result, and a checkpoint can keep the
batches already sampled for the steps after it: a resume continues exactly as the run would
have.
"""
from __future__ import annotations

import ctypes
import logging
import os
import pickle
import queue
import signal
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Iterable, Optional

import torch

log = logging.getLogger("hybrid_rl")


class RolloutWorkerDied(RuntimeError):
    """The rollout worker died more often than rollout.max_worker_restarts allows."""


@dataclass(frozen=True)
class WorkerSpec:
    """Everything the worker needs to build its sampler (plain values: it is pickled)."""

    location: str  # the starting model's folder: the architecture the published weights fill
    dtype: str
    trust_remote_code: bool
    lora: Any  # a LoraConfig when the policy trains adapters (the same ones are added), else None
    tokenizer: Any
    backend: str  # a registered rollout backend (hf, vllm, ...)
    settings: dict  # its keyword arguments (hybrid_rl/recipes/build.py: rollout_settings)
    group_size: int
    completion_limits: dict  # task -> its max_new_tokens (None: the backend's own)
    pad_token_id: int
    gpu: Optional[str]  # the trainer process's GPU as CUDA_VISIBLE_DEVICES names it (None: CPU)
    threads: int  # torch CPU threads
    seed: int  # this process's seed (cfg.seed + rank); each request mixes in its step
    parent_pid: int


@dataclass
class Request:
    step: int  # the training step the batch is for
    version: int  # the weight version to sample with (= the optimizer updates behind it)
    seed: int
    samples: list  # the step's prompts (Samples), in the order drawn


@dataclass
class Produced:
    step: int
    version: int
    samples: list  # the prompts in the order sampled (generate_by_limit groups by limit)
    batch: Any  # RolloutBatch
    seconds: float  # the worker's time on it


@dataclass
class WorkerFailed:
    error: str  # the traceback


@dataclass(frozen=True)
class _Entry:
    name: str
    dtype: torch.dtype
    offset: int
    shape: tuple


@dataclass
class WeightSlots:
    """`count` versions of the trained parameters, each a flat shared-memory buffer per dtype.
    Version v lives in slot v % count; a slot's version is -1 while it is being written."""

    entries: list[_Entry]
    buffers: list[dict]  # per slot: dtype -> flat shared tensor
    versions: torch.Tensor  # [count] int64, shared

    @classmethod
    def create(cls, params: Iterable[tuple[str, torch.Tensor]], count: int) -> "WeightSlots":
        entries, sizes = [], {}
        for name, p in params:
            entries.append(_Entry(name, p.dtype, sizes.get(p.dtype, 0), tuple(p.shape)))
            sizes[p.dtype] = sizes.get(p.dtype, 0) + p.numel()
        buffers = [{dtype: torch.zeros(n, dtype=dtype).share_memory_()
                    for dtype, n in sizes.items()} for _ in range(count)]
        return cls(entries, buffers, torch.full((count,), -1, dtype=torch.int64).share_memory_())

    def _views(self, slot: int) -> dict[str, torch.Tensor]:
        flat = self.buffers[slot]
        return {e.name: flat[e.dtype][e.offset: e.offset + _numel(e.shape)].view(e.shape)
                for e in self.entries}

    @torch.no_grad()
    def publish(self, version: int, params: Iterable[tuple[str, torch.Tensor]]) -> None:
        slot = version % len(self.versions)
        views = self._views(slot)
        self.versions[slot] = -1
        given = 0
        for name, p in params:
            views[name].copy_(p.detach().reshape(views[name].shape))
            given += 1
        if given != len(views):
            raise RuntimeError(f"published {given} tensors, the slots hold {len(views)}")
        self.versions[slot] = version

    def overwritten_by(self, version: int) -> int:
        """The version whose slot publishing `version` overwrites."""
        return version - len(self.versions)

    @torch.no_grad()
    def load_into(self, model: torch.nn.Module, version: int) -> None:
        """Copy `version` into `model`'s parameters of the same names; loud when the slot does
        not hold it (before or after the copy): sampling from other weights would be silent."""
        slot = version % len(self.versions)
        found = int(self.versions[slot])
        if found != version:
            raise RuntimeError(f"weight version {version} is not in its slot (found {found})")
        own = dict(model.named_parameters())
        missing = [e.name for e in self.entries if e.name not in own]
        if missing:
            raise RuntimeError(f"the worker's model has no parameter {missing[0]!r} "
                               f"({len(missing)} of {len(self.entries)} missing)")
        for name, view in self._views(slot).items():
            own[name].copy_(view)
        if int(self.versions[slot]) != version:
            raise RuntimeError(f"weight version {version} was overwritten while being read")


def _numel(shape: tuple) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def request_seed(seed: int, step: int) -> int:
    """A step's sampling seed: the same whichever worker incarnation samples it."""
    return (seed * 1_000_003 + step) % (2**63)


# ---------------------------------------------------------------- the worker process


def _die_with_parent(parent_pid: int) -> None:
    """SIGKILL this process when the trainer dies (Linux), so a killed trainer leaves no
    worker behind; elsewhere the request loop's parent check is the only guard."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent_pid:  # the parent died before the call above
        os._exit(1)


def _next_request(requests, parent_pid: int) -> Optional[Request]:
    while True:
        try:
            return requests.get(timeout=1.0)
        except queue.Empty:
            if os.getppid() != parent_pid:
                return None


# what torchrun and SLURM set for a rank: the worker is no rank of the trainers' process group
RANK_VARIABLES = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "GROUP_RANK",
                  "ROLE_RANK", "ROLE_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
                  "TORCHELASTIC_RUN_ID", "SLURM_PROCID", "SLURM_LOCALID", "SLURM_NTASKS")


def standalone_environment(env: dict, gpu: Optional[str]) -> dict:
    """The worker's environment: a single process (so vLLM runs its in-process executor rather
    than joining the trainers' group), seeing only its trainer's GPU, as device 0."""
    out = {k: v for k, v in env.items() if k not in RANK_VARIABLES}
    if gpu is not None:
        out["CUDA_VISIBLE_DEVICES"] = gpu
    return out


def trainer_gpu(local_index: Optional[int]) -> Optional[str]:
    """The physical id of the trainer's GPU (`local_index` among those it sees; None: CPU)."""
    if local_index is None:
        return None
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    return visible.split(",")[local_index] if visible else str(local_index)


def _load_model(spec: WorkerSpec) -> torch.nn.Module:
    from hybrid_rl.models.loading import load_policy

    model = load_policy(spec.location, dtype=spec.dtype, trust_remote_code=spec.trust_remote_code)
    if spec.lora is not None:
        from hybrid_rl.models import lora

        model = lora.add_adapters(model, spec.lora)
    return model.to("cpu" if spec.gpu is None else "cuda:0").eval().requires_grad_(False)


def worker_main(spec: WorkerSpec, slots: WeightSlots, requests, results) -> None:
    """Sample each request's batch from the weight version it names, in order, until told to
    stop (None) or the trainer is gone. Any error goes back to the trainer as its traceback."""
    _die_with_parent(spec.parent_pid)
    env = standalone_environment(dict(os.environ), spec.gpu)  # before anything touches CUDA
    os.environ.clear()
    os.environ.update(env)
    torch.set_num_threads(spec.threads)
    try:
        from hybrid_rl.rollout import build_backend, generate_by_limit

        model = _load_model(spec)
        rollout = build_backend(spec.backend, model, spec.tokenizer, **spec.settings)
        loaded = None
        while (request := _next_request(requests, spec.parent_pid)) is not None:
            start = time.time()
            if request.version != loaded:
                slots.load_into(model, request.version)
                if rollout.copies_weights:
                    rollout.sync_weights(model)
                loaded = request.version
            torch.manual_seed(request.seed)
            ordered, batch = generate_by_limit(rollout, request.samples, spec.group_size,
                                               spec.completion_limits, spec.pad_token_id)
            results.put(pickle.dumps(Produced(request.step, request.version, ordered, batch,
                                              time.time() - start)))
    except BaseException:  # noqa: BLE001 - every failure goes back to the trainer
        results.put(pickle.dumps(WorkerFailed(traceback.format_exc())))
        raise SystemExit(1)


# ---------------------------------------------------------------- the trainer's side


@dataclass
class AsyncRollouts:
    """The trainer's end: draws prompts ahead, keeps what is in flight, restarts a dead
    worker. `take(step)` returns the step's batch, sampled `steps_ahead` updates ago."""

    spec: WorkerSpec
    slots: WeightSlots
    steps_ahead: int
    stream: Any  # the prompt stream (next(n), state_dict())
    prompts_per_step: int
    base_version: int  # the weights the run (or resume) started from
    timeout_s: float
    max_restarts: int
    pid_file: Optional[str] = None  # where the worker's pid is written (tests kill it)
    restarts: int = 0
    outstanding: dict = field(default_factory=dict)  # step -> Request sent, not yet back
    ready: dict = field(default_factory=dict)  # step -> Produced, not yet taken
    data_before: dict = field(default_factory=dict)  # step -> the stream's state before its draw

    def __post_init__(self) -> None:
        self.next_step = self.base_version + 1
        self._context = torch.multiprocessing.get_context("spawn")
        self.process = None
        self._heard = time.time()
        self._start()

    def version_for(self, step: int) -> int:
        return max(step - 1 - self.steps_ahead, self.base_version)

    def take(self, step: int) -> tuple[Produced, float]:
        """(the batch for `step`, seconds waited for it). Sends the requests up to
        step + steps_ahead first, so the worker has the next ones while this one trains."""
        while self.next_step <= step + self.steps_ahead:
            s = self.next_step
            self.data_before[s] = self.stream.state_dict()
            request = Request(s, self.version_for(s), request_seed(self.spec.seed, s),
                              self.stream.next(self.prompts_per_step))
            self.outstanding[s] = request
            self.requests.put(request)
            self.next_step += 1
        start = self._heard = time.time()
        while step not in self.ready:
            self._receive()
        self.data_before.pop(step, None)
        return self.ready.pop(step), time.time() - start

    def publish(self, version: int, params: Iterable[tuple[str, torch.Tensor]]) -> None:
        overwritten = self.slots.overwritten_by(version)
        needed = [r.step for r in self.outstanding.values() if r.version <= overwritten]
        if needed:  # the pipeline's invariant: never true unless this module has a bug
            raise RuntimeError(f"publishing weight version {version} would overwrite version "
                               f"{overwritten}, which steps {needed} still need")
        self.slots.publish(version, params)

    def finish_in_flight(self) -> list[tuple[int, dict, Produced]]:
        """Wait for every request sent; (step, stream state before its draw, batch) of each
        batch not yet taken, in step order (what a checkpoint keeps)."""
        self._heard = time.time()
        while self.outstanding:
            self._receive()
        return [(s, self.data_before[s], self.ready[s]) for s in sorted(self.ready)]

    def restore(self, in_flight: list[tuple[int, dict, Produced]]) -> None:
        """Batches a checkpoint kept for the steps after it: taken before anything is sent."""
        for step, before, produced in in_flight:
            self.ready[step], self.data_before[step] = produced, before
            self.next_step = max(self.next_step, step + 1)

    def close(self) -> None:
        if self.process is None:
            return
        if self.process.is_alive():
            self.requests.put(None)
            self.process.join(10)
        self._kill()
        self.process = None

    # -- the worker's life

    def _start(self) -> None:
        self.requests, self.results = self._context.Queue(), self._context.Queue()
        self.process = self._context.Process(
            target=worker_main, args=(self.spec, self.slots, self.requests, self.results),
            name="rollout-worker", daemon=True)
        self.process.start()
        log.info("rollout worker started (pid %d), sampling %d step(s) ahead",
                 self.process.pid, self.steps_ahead)
        if self.pid_file:
            with open(self.pid_file, "w") as f:
                f.write(str(self.process.pid))
        for request in self.outstanding.values():
            self.requests.put(request)

    def _kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(10)
        for q in (self.requests, self.results):
            q.cancel_join_thread()  # a dead reader must not hold up this process's exit
            q.close()

    def _receive(self) -> None:
        """Take one message from the worker, or notice within half a second that it died or
        has been silent (since the wait began or its last batch) for rollout.worker_timeout_s."""
        try:
            item = pickle.loads(self.results.get(timeout=0.5))
        except queue.Empty:
            if not self.process.is_alive():
                self._restart(f"died (exit code {self.process.exitcode})")
            elif time.time() - self._heard > self.timeout_s:
                self._restart(f"sent nothing for {self.timeout_s:g} s "
                              "(rollout.worker_timeout_s); killed")
            return
        if isinstance(item, WorkerFailed):  # it exits next: _restart waits for it
            self._restart(f"failed:\n{item.error}")
        elif item.step in self.outstanding:  # a restarted worker may send a step twice
            self._heard = time.time()
            del self.outstanding[item.step]
            self.ready[item.step] = item

    def _restart(self, what: str) -> None:
        pid = self.process.pid
        self._kill()
        self._heard = time.time()  # the new worker's silence counts from its start
        self.restarts += 1
        if self.restarts > self.max_restarts:
            raise RolloutWorkerDied(
                f"the rollout worker (pid {pid}) {what}; it has died {self.restarts} times, more "
                f"than rollout.max_worker_restarts={self.max_restarts}")
        log.warning("the rollout worker (pid %d) %s; restarting it (restart %d of at most %d) "
                    "and sending steps %s again", pid, what, self.restarts, self.max_restarts,
                    sorted(self.outstanding))
        self._start()
