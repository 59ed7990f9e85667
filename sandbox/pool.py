"""Host side of the sandbox: one long-lived harness per worker slot, and a pool over them."""
from __future__ import annotations

import logging
import marshal
import os
import queue
import select
import shutil
import signal
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Optional, Sequence

from sandbox.launch import (
    HARNESS_FILES,
    Launch,
    SandboxSettings,
    SandboxUnavailable,
    UidLease,
    bwrap_launch,
    choose_python,
    process_limits,
    unsafe_launch,
)
from sandbox.units import prepare_tests

STATUSES = ("pass", "fail", "timeout", "error")
START_GRACE_S = 10.0  # a fresh sandbox's own start-up, on top of the job's time limit
REPLY_GRACE_S = 1.0  # a running sandbox enforces the limit itself; this is the backstop margin
UNSAFE_WARNING = (
    "sandbox.backend=unsafe_local: model-written code runs WITHOUT isolation (no namespaces, "
    "your uid, your files and network). Use it only for code you trust."
)
log = logging.getLogger("hybrid_rl.sandbox")


@dataclass
class Job:
    program: str  # the untrusted code
    tests: str  # trusted test code; its `assert`s are the units counted
    context: str = ""  # trusted code run before the tests, in the judge (e.g. HumanEval's helpers)
    # program names the tests may call; None = every top-level callable
    expose: Optional[Sequence[str]] = None


@dataclass
class ExecResult:
    status: str  # pass | fail | timeout | error
    passed_units: int = 0  # asserts that held every time they ran
    total_units: int = 0  # asserts in the tests
    error: Optional[str] = None  # why it did not pass
    output: str = ""  # the program's stdout+stderr, first max_output_bytes
    output_bytes: int = 0  # how much it wrote in all
    duration_s: float = 0.0

    @property
    def passed(self) -> bool:
        return self.status == "pass"

    @property
    def fraction(self) -> float:
        """Share of the asserts that held (1.0 on a pass, whatever the count)."""
        if self.passed:
            return 1.0
        return self.passed_units / self.total_units if self.total_units else 0.0


class Worker:
    """One harness process (inside bwrap or not) that runs jobs one after another."""

    def __init__(self, settings: SandboxSettings):
        self.settings = settings
        self.proc: Optional[subprocess.Popen] = None
        self.jobs_done = 0
        self._unsafe_dir: Optional[str] = None
        self._uid: Optional[UidLease] = None  # root only: this worker's own uid

    # ------------------------------------------------------------ lifecycle ----
    def _launch(self, channel: tuple[int, int], harness_fds: list[int]) -> Launch:
        if self.settings.backend == "bwrap":
            if os.geteuid() == 0 and self._uid is None:
                self._uid = UidLease(self.settings.uid_base)
            return bwrap_launch(
                self.settings, self._uid.uid if self._uid else None, harness_fds, channel
            )
        self._unsafe_dir = self._unsafe_dir or tempfile.mkdtemp(prefix="hybrid-rl-unsafe-")
        python = choose_python(self.settings, switching_uid=False)
        return unsafe_launch(python, os.path.join(self._unsafe_dir, "job"), channel)

    def start(self) -> None:
        to_harness_r, to_harness_w = os.pipe()
        from_harness_r, from_harness_w = os.pipe()
        harness_fds = []
        for path in HARNESS_FILES:
            harness_fds.append(os.memfd_create(path.stem))
            os.write(harness_fds[-1], path.read_bytes())
            os.lseek(harness_fds[-1], 0, os.SEEK_SET)
        try:
            self.launch = self._launch((to_harness_r, from_harness_w), harness_fds)
            self.stderr = tempfile.TemporaryFile()
            user = self.launch.user
            self.proc = subprocess.Popen(
                self.launch.argv, env={}, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=self.stderr,
                pass_fds=(to_harness_r, from_harness_w, *harness_fds), start_new_session=True,
                user=user, group=user, extra_groups=[] if user is not None else None,
            )
        finally:
            for fd in (to_harness_r, from_harness_w, *harness_fds):
                os.close(fd)
        self.to_harness, self.from_harness = to_harness_w, from_harness_r
        self.jobs_done = 0
        self._send({"isolated": self.launch.isolated, "scratch_dirs": self.launch.scratch_dirs})

    def stop(self) -> None:
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()
        for fd in (self.to_harness, self.from_harness):
            os.close(fd)
        self.stderr.close()
        self.proc = None

    def close(self) -> None:
        self.stop()
        if self._uid is not None:
            self._uid.release()
            self._uid = None
        if self._unsafe_dir:
            shutil.rmtree(self._unsafe_dir, ignore_errors=True)

    # ------------------------------------------------------------------ jobs ----
    def run(self, job: Job) -> ExecResult:
        grace = REPLY_GRACE_S
        worn_out = self.jobs_done >= self.settings.jobs_per_sandbox
        if self.proc is None or self.proc.poll() is not None or worn_out:
            self.stop()
            self.start()
            grace = START_GRACE_S
        started = time.monotonic()
        tests, units = prepare_tests(job.tests)
        secret = os.urandom(16)
        deadline = started + self.settings.timeout_s + grace
        try:
            self._send({
                "program": job.program, "workdir": self.launch.workdir,
                "env": {"PATH": "/usr/bin:/bin", "HOME": self.launch.workdir,
                        "TMPDIR": self.launch.workdir,
                        "LANG": "C.UTF-8", "PYTHONIOENCODING": "utf-8"},
                "limits": process_limits(self.settings,
                                         self.launch.user if self.launch.isolated else None),
            })
            self._send(
                {
                    "tests": tests,
                    "units": units,
                    "context": job.context,
                    "expose": None if job.expose is None else [str(n) for n in job.expose],
                    "secret": secret,
                    "timeout_s": float(self.settings.timeout_s),
                    "max_output_bytes": self.settings.max_output_bytes,
                }
            )
            verdict = self._receive(deadline)
        except _Broken as exc:
            reason = self._harness_failure(str(exc))
            self.stop()
            status = "timeout" if time.monotonic() >= deadline else "error"
            return ExecResult(status, error=reason, duration_s=time.monotonic() - started)
        self.jobs_done += 1
        self._await_clean_sandbox(deadline)
        return self._result(verdict, secret, started)

    def _await_clean_sandbox(self, deadline: float) -> None:
        """After the verdict the zygote wipes the job and checks that nothing is left; a
        sandbox that is not clean (or says nothing) is replaced before the next job."""
        try:
            ready = self._receive(deadline + REPLY_GRACE_S)
        except _Broken:
            ready = None
        if type(ready) is not dict or ready.get("ready") is not True:
            self.stop()

    def _result(self, verdict, secret: bytes, started: float) -> ExecResult:
        forged = type(verdict) is not dict or verdict.get("secret") != secret
        if forged or verdict.get("status") not in STATUSES:
            self.stop()  # whatever wrote this frame, the channel can no longer be trusted
            return ExecResult(
                "error",
                error=str(verdict.get("error") if type(verdict) is dict else "bad verdict"),
                duration_s=time.monotonic() - started,
            )
        return ExecResult(
            verdict["status"],
            int(verdict.get("passed_units", 0)),
            int(verdict.get("total_units", 0)),
            verdict.get("error"),
            verdict.get("output", ""),
            int(verdict.get("output_bytes", 0)),
            time.monotonic() - started,
        )

    def _harness_failure(self, reason: str) -> str:
        if self.proc is not None and self.proc.poll() is not None:
            self.stderr.seek(0)
            tail = self.stderr.read()[-2000:].decode("utf-8", "replace").strip()
            return f"the sandbox exited with code {self.proc.returncode}: {tail or reason}"
        return reason

    def _send(self, obj) -> None:
        data = marshal.dumps(obj)
        try:
            os.write(self.to_harness, len(data).to_bytes(4, "big"))
            view = memoryview(data)
            while view:
                view = view[os.write(self.to_harness, view):]
        except (BrokenPipeError, OSError) as exc:
            raise _Broken(f"the sandbox is gone ({exc})") from None

    def _receive(self, deadline: float):
        header = self._read(4, deadline)
        try:
            return marshal.loads(self._read(int.from_bytes(header, "big"), deadline))
        except (EOFError, ValueError, TypeError) as exc:
            raise _Broken(f"unreadable message from the sandbox ({exc})") from None

    def _read(self, size: int, deadline: float) -> bytes:
        chunks = []
        while size:
            wait = deadline - time.monotonic()
            if wait <= 0 or not select.select([self.from_harness], [], [], wait)[0]:
                raise _Broken("the sandbox did not answer in time")
            chunk = os.read(self.from_harness, min(size, 1 << 20))
            if not chunk:
                raise _Broken("the sandbox closed its channel")
            chunks.append(chunk)
            size -= len(chunk)
        return b"".join(chunks)


class _Broken(Exception):
    pass


class SandboxPool:
    """At most `settings.workers` jobs at once, each in its own sandbox and uid. `run_batch`
    returns when every job has a result; a slow job holds one worker, never the batch."""

    def __init__(self, settings: SandboxSettings = SandboxSettings()):
        problems = list(settings.problems())
        if problems:
            raise ValueError("sandbox settings: " + "; ".join(problems))
        self.settings = settings
        self._workers = [Worker(settings) for _ in range(settings.workers)]
        self._idle: queue.SimpleQueue = queue.SimpleQueue()
        for worker in self._workers:
            self._idle.put(worker)
        self._executor = ThreadPoolExecutor(settings.workers, thread_name_prefix="sandbox")
        if settings.backend == "unsafe_local":  # every pool, into the run log (not only stderr)
            log.warning(UNSAFE_WARNING)
        self.check()

    def check(self) -> None:
        """Start one sandbox and run a trivial job, so a machine that cannot sandbox fails now."""
        result = self.run(Job("def f():\n    return 1\n", "assert f() == 1\n"))
        if not result.passed:
            raise SandboxUnavailable(f"the {self.settings.backend} sandbox "
                                     f"does not work here: {result.error}")

    def run(self, job: Job) -> ExecResult:
        worker = self._idle.get()
        try:
            return worker.run(job)
        finally:
            self._idle.put(worker)

    def run_batch(self, jobs: Sequence[Job]) -> list[ExecResult]:
        return list(self._executor.map(self.run, jobs))

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        for worker in self._workers:
            worker.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def run_tests(program: str, tests: str, *, timeout_s: float, memory_mb: int, context: str = "",
              expose: Optional[Sequence[str]] = None, backend: str = "bwrap") -> ExecResult:
    """Run one program against its tests in a sandbox of its own (started and torn down here).
    For many programs use a SandboxPool: it keeps sandboxes warm between jobs."""
    settings = SandboxSettings(backend=backend, workers=1, timeout_s=timeout_s, memory_mb=memory_mb,
                               jobs_per_sandbox=1)
    worker = Worker(settings)
    try:
        return worker.run(Job(program, tests, context, expose))
    finally:
        worker.close()
