"""Run verifier calls in worker processes that can be killed and replaced.

Why processes: a check that hangs (a pathological sympy expression) or crashes (a segfault
in a C extension) must cost one sample, never the training run. A timer inside the same
process cannot stop a C-level loop and signal-based timeouts only work in the main thread;
killing a separate process works from any thread, in any process.

Each item is one call `functions[index](*args)`. Workers are forked from the caller, so any
verifier registered before the pool starts (by decorator, entry point or in the training
script itself) is available in them without pickling the function.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import signal
import time
import traceback
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any, Callable, Optional, Sequence


@dataclass
class Outcome:
    value: Any = None  # the call's return value, when it succeeded
    error: Optional[str] = None  # why it failed: exception, timeout or crash


IN_WORKER = False  # True inside a pool worker: code there may run unbounded work directly
PARENT_CHECK_S = 0.5  # how often an idle worker checks that the trainer is still alive


def _worker_loop(functions: Sequence[Callable], conn: Connection, parent_pid: int) -> None:
    global IN_WORKER
    IN_WORKER = True
    # A forked worker inherits the trainer's signal handlers; a scheduler's (submitit's) that
    # ignores SIGTERM would make multiprocessing's exit-time terminate() a no-op and leave the
    # trainer waiting for this worker forever. The default handler lets it end.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    while True:
        # An EOF is not enough to notice that the trainer died (even by SIGKILL): sibling
        # workers forked later hold copies of its end of the pipe. So look up now and then.
        if not conn.poll(PARENT_CHECK_S):
            if os.getppid() != parent_pid:
                return
            continue
        try:
            message = conn.recv()
        except EOFError:  # the parent went away
            return
        if message is None:
            return
        index, args = message
        try:
            conn.send(Outcome(value=functions[index](*args)))
        except BaseException as exc:  # report everything, including SystemExit from user code
            conn.send(
                Outcome(error=f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=3)}")
            )


class _Worker:
    def __init__(self, ctx, functions):
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(
            target=_worker_loop, args=(functions, child, os.getpid()), daemon=True
        )
        self.process.start()
        child.close()
        self.item: Optional[int] = None  # index of the item it is working on
        self.started = 0.0

    def kill(self) -> None:
        self.process.kill()
        self.process.join(timeout=5)
        self.conn.close()


class _Job:
    """Items handed to a pool by `start`, and what has come back of them."""

    def __init__(self, items: list):
        self.items = items
        self.results: list[Optional[Outcome]] = [None] * len(items)
        self.pending = list(range(len(items)))[::-1]  # a stack: pop() hands out items in order


class WorkerPool:
    """`num_workers` processes running `functions`; each call is bounded by `timeout_s`."""

    def __init__(self, functions: Sequence[Callable], num_workers: int = 2, timeout_s: float = 2.0):
        if num_workers < 1:
            raise ValueError(f"num_workers must be >= 1, got {num_workers}")
        self.functions = list(functions)
        self.num_workers, self.timeout_s = num_workers, timeout_s
        self._ctx = mp.get_context("fork")
        self._workers = [_Worker(self._ctx, self.functions) for _ in range(num_workers)]
        self.replaced = 0  # workers killed (timeout) or found dead (crash) and started anew

    def run(self, items: Sequence[tuple[int, tuple]]) -> list[Outcome]:
        """One Outcome per item, in order. Never raises for a failing, hanging or crashing call."""
        return self.finish(self.start(items))

    def start(self, items: Sequence[tuple[int, tuple]]) -> "_Job":
        """Hand the first items to the idle workers and return at once: the caller can do other
        work while they run (each call's time limit counts from its dispatch), then `finish`."""
        if any(w.item is not None for w in self._workers):
            raise RuntimeError("the pool is still running another job: finish it first")
        job = _Job(list(items))
        self._hand_out(job)
        return job

    def finish(self, job: "_Job") -> list[Outcome]:
        """The job's outcomes, in order, once every item has returned, failed or timed out."""
        while job.pending or any(w.item is not None for w in self._workers):
            self._hand_out(job)
            busy = [w for w in self._workers if w.item is not None]
            next_deadline = min(w.started for w in busy) + self.timeout_s
            ready = wait([w.conn for w in busy], timeout=max(0.0, next_deadline - time.monotonic()))
            for w in busy:
                index = w.item
                if w.conn in ready:
                    job.results[index] = self._receive(w)
                elif time.monotonic() - w.started >= self.timeout_s:
                    job.results[index] = Outcome(
                        error=f"timed out after {self.timeout_s:g} s; worker killed"
                    )
                    self._replace(w)
        return job.results  # type: ignore[return-value]

    def _hand_out(self, job: "_Job") -> None:
        for w in self._workers:
            if w.item is None and job.pending:
                index = job.pending.pop()
                self._dispatch(w, job.items[index])
                w.item, w.started = index, time.monotonic()

    def _dispatch(self, w: _Worker, item) -> None:
        """Send `item` to an idle worker; one that died while idle (a crash, a kill) is replaced
        first."""
        try:
            w.conn.send(item)
        except (BrokenPipeError, OSError):
            self._replace(w)
            w.conn.send(item)

    def _receive(self, w: _Worker) -> Outcome:
        try:
            outcome = w.conn.recv()
        except (EOFError, OSError):
            w.process.join(timeout=5)
            outcome = Outcome(error=f"worker crashed (exit code {w.process.exitcode})")
            self._replace(w)
            return outcome
        w.item = None
        return outcome

    def _replace(self, w: _Worker) -> None:
        w.kill()
        fresh = _Worker(self._ctx, self.functions)
        w.conn, w.process, w.item = fresh.conn, fresh.process, None
        self.replaced += 1

    def close(self) -> None:
        for w in self._workers:
            try:
                w.conn.send(None)
            except (BrokenPipeError, OSError):
                pass
            w.process.join(timeout=1)
            if w.process.is_alive():
                w.kill()

    def __enter__(self) -> "WorkerPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
