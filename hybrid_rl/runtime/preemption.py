"""Checkpoint on a scheduler's warning signal, then requeue (README "Running on a SLURM cluster").

SLURM warns a job before it ends it: SIGTERM when it is preempted or cancelled, and the signal
asked for with `--signal` (USR1 by convention, USR2 for submitit, which Hydra's SLURM launcher
uses) before its time limit. A run that only dies loses every step since its last periodic
checkpoint. Here the signal just sets a flag; the training loop sees it after the step it is in
(every process decides together, so a collective save cannot hang), writes a checkpoint, and
hands over:
- to the handler that was there before (submitit's requeues the job, and its own checkpoint
  resubmits the same Hydra job), or
- under SLURM, for USR1/USR2, `scontrol requeue <job>` (the job must be requeueable:
  `sbatch --requeue`), then exits with 128 + the signal number. For SIGTERM SLURM itself
  decides (PreemptMode=REQUEUE requeues).
A requeued job (SLURM_RESTART_COUNT > 0) resumes from its run folder's latest checkpoint
(hybrid_rl/runtime/checkpoint.py: resolve_resume), so the run continues exactly.
"""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from typing import Optional

from hybrid_rl.runtime import distributed

log = logging.getLogger("hybrid_rl")
WARNINGS = (signal.SIGUSR1, signal.SIGUSR2)  # SIGTERM too, but only in a SLURM job: elsewhere
# it is a plain stop (torchrun ends the other workers with it when one fails)


class Preemption:
    def __init__(self) -> None:
        self.signal: Optional[int] = None  # the first warning signal this process received
        self.stop = False  # the processes' joint decision, taken once a step
        self.previous: dict[int, object] = {}

    def install(self) -> "Preemption":
        """Catch the warning signals (only the main thread may; elsewhere nothing is caught)."""
        if threading.current_thread() is threading.main_thread():
            slurm = "SLURM_JOB_ID" in os.environ
            for sig in WARNINGS + ((signal.SIGTERM,) if slurm else ()):
                self.previous[sig] = signal.signal(sig, self._note)
        return self

    def _note(self, signum: int, frame) -> None:
        if self.signal is None:
            self.signal = signum

    def requested(self) -> bool:
        """Whether any process was signalled (collective: every process calls it each step)."""
        self.stop = not distributed.all_ranks_true(self.signal is None)
        return self.stop

    def exit_if_requested(self, step: int) -> None:
        """After the step's checkpoint is written: if a warning came, requeue where that is
        ours to do, and exit."""
        if not self.stop:
            return
        signum = self.signal or signal.SIGTERM
        log.warning("%s received: the checkpoint of step %d is written; stopping",
                    signal.Signals(signum).name, step)
        previous = self.previous.get(signum)
        if callable(previous):  # submitit's: it requeues (rank 0) and exits
            previous(signum, None)
        job = os.environ.get("SLURM_JOB_ID")
        if job and signum != signal.SIGTERM and distributed.is_main():
            done = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True)
            if done.returncode == 0:
                log.warning("SLURM job %s requeued: it resumes from step %d", job, step)
            else:
                log.error("scontrol requeue %s failed (%s); resume with checkpoint.resume=auto",
                          job, done.stderr.strip())
        distributed.shutdown()
        sys.exit(128 + signum)


def requeued() -> bool:
    """A SLURM job that was requeued runs its command again: it should resume."""
    return int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0) > 0

