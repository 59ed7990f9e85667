"""Scoring completions with each reward signal of their task, and combining the signals.

Each signal is kept and logged under its own name; hybrid_rl/composition.py sums them into the
reward GRPO uses.
A verifier that fails is never allowed to score a batch as 0 silently: in-process, a batch
that raises is retried sample by sample; in the worker pool a chunk that fails is scored again
one sample per call. The failing samples get None (no opinion) and are written to a failures file, and the error count
is reported per signal every step.
"""
from __future__ import annotations

import json
import math
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence


from hybrid_rl.data import Sample
from verifiers import Flagged, Verifier
from verifiers.pool import WorkerPool


class RewardFailure(RuntimeError):
    """Too many of a signal's scores failed in one step."""


@dataclass
class Signal:
    name: str
    verifier: Verifier
    weight: float


@dataclass
class SignalScores:
    values: dict[str, list[Optional[float]]]  # signal -> one score (or None) per completion
    errors: dict[str, int] = field(default_factory=dict)  # signal -> checks that failed (not timeouts)
    timeouts: dict[str, int] = field(default_factory=dict)  # signal -> checks that ran out of time
    # signal -> failures written to the failures file (the verifier's or the machine's doing; the
    # rest, like model-written code that does not compile, is only counted)
    recorded: dict[str, int] = field(default_factory=dict)


def _call_batch(verifier: Verifier):
    """A batch call of a verifier, as run inside a pool worker."""
    return lambda completions, references, samples: verifier(completions, references, samples=samples)


class RewardScorer:
    """Runs every signal of every task over a batch. `signals_by_task` maps a task name to its
    signals, so a mixed-task batch routes each sample to its own task's verifiers and weights.

    With num_workers > 0 every verifier call runs in a worker process, bounded by timeout_s:
    a hang or a crash costs that one sample (None, recorded), never the run. The batch goes
    out in one chunk per worker (few round trips); a chunk that fails is scored again one
    sample per call, so only the offending samples lose their score."""

    def __init__(
        self, signals_by_task: dict[str, list[Signal]], failures_path: Optional[Path] = None,
        max_error_rate: float = 1.0, num_workers: int = 0, timeout_s: float = 2.0,
    ):
        self.signals_by_task = signals_by_task
        self.failures_path = failures_path
        self.max_error_rate = max_error_rate
        self.signal_names = sorted({s.name for sigs in signals_by_task.values() for s in sigs})
        every_signal = [s for sigs in signals_by_task.values() for s in sigs]
        self._pool_index = {id(s): i for i, s in enumerate(every_signal)}  # signal -> pool function
        self.pool = None
        if num_workers > 0:
            functions = [_call_batch(s.verifier) for s in every_signal]
            self.pool = WorkerPool(functions, num_workers=num_workers, timeout_s=timeout_s)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()

    def score(self, samples: Sequence[Sample], completions: Sequence[str]) -> SignalScores:
        values = {name: [None] * len(samples) for name in self.signal_names}
        errors = {name: 0 for name in self.signal_names}
        timeouts = {name: 0 for name in self.signal_names}
        recorded = {name: 0 for name in self.signal_names}
        for task, signals in self.signals_by_task.items():
            rows = [i for i, s in enumerate(samples) if s.task == task]
            if not rows:
                continue
            for signal in signals:
                scores, failures = self._run(signal, [samples[i] for i in rows], [completions[i] for i in rows])
                for i, v in zip(rows, scores):
                    values[signal.name][i] = v
                    if isinstance(v, Flagged) and v.record:  # a valid score with a reason to doubt it
                        self._record_failure(signal.name, samples[i], completions[i], v.reason, v.reason)
                reasons = failures + [v.reason for v in scores if isinstance(v, Flagged)]
                recorded[signal.name] += len(failures) + sum(isinstance(v, Flagged) and v.record for v in scores)
                timed_out = sum("timed out" in r for r in reasons)
                timeouts[signal.name] += timed_out
                errors[signal.name] += len(reasons) - timed_out
                if len(failures) > self.max_error_rate * len(rows):
                    raise RewardFailure(
                        f"verifier {signal.name!r} failed on {len(failures)} of {len(rows)} {task!r} completions "
                        f"(> reward.max_error_rate={self.max_error_rate}); last error: {failures[-1]}; "
                        f"every failing sample is in {self.failures_path}"
                    )
        return SignalScores(values, errors, timeouts, recorded)

    def _run(self, signal: Signal, samples, completions) -> tuple[list[Optional[float]], list[str]]:
        """(scores, one error message per failed sample)."""
        if self.pool is not None and not getattr(signal.verifier, "runs_isolated", False):
            return self._run_isolated(signal, samples, completions)
        refs = [s.reference for s in samples]
        try:
            return self._checked(signal, signal.verifier(completions, refs, samples=samples), len(samples)), []
        except Exception:  # isolate the offending samples: retry one by one
            pass
        scores, failures = [], []
        for sample, completion in zip(samples, completions):
            try:
                scores.append(self._checked(signal, signal.verifier([completion], [sample.reference], samples=[sample]), 1)[0])
            except Exception as exc:
                scores.append(None)
                self._fail(signal, sample, completion, f"{type(exc).__name__}: {exc}", traceback.format_exc(limit=5), failures)
        return scores, failures

    def _run_isolated(self, signal: Signal, samples, completions) -> tuple[list[Optional[float]], list[str]]:
        index = self._pool_index[id(signal)]
        size = -(-len(samples) // self.pool.num_workers)  # one chunk per worker
        chunks = [range(i, min(i + size, len(samples))) for i in range(0, len(samples), size)]
        scores: list = [None] * len(samples)
        errors: dict[int, str] = {}
        for chunk, outcome in zip(chunks, self._pool_call(index, chunks, samples, completions)):
            values = self._valid(signal, outcome, len(chunk))
            if isinstance(values, list):
                for i, v in zip(chunk, values):
                    scores[i] = v
            else:  # a failed chunk: find the offending samples one call each
                errors.update({i: "" for i in chunk})
        singles = [range(i, i + 1) for i in sorted(errors)]
        for single, outcome in zip(singles, self._pool_call(index, singles, samples, completions)):
            values = self._valid(signal, outcome, 1)
            if isinstance(values, list):
                scores[single[0]] = values[0]
                del errors[single[0]]
            else:
                errors[single[0]] = values
        failures = []
        for i in sorted(errors):
            self._fail(signal, samples[i], completions[i], errors[i].splitlines()[0], errors[i], failures)
        return scores, failures

    def _pool_call(self, index: int, chunks: list[range], samples, completions):
        return self.pool.run([
            (index, ([completions[i] for i in c], [samples[i].reference for i in c], [samples[i] for i in c]))
            for c in chunks
        ]) if chunks else []

    def _valid(self, signal: Signal, outcome, expected: int):
        """The checked scores of one pool call, or the error message (str) if it failed."""
        if outcome.error is not None:
            return outcome.error
        try:
            return self._checked(signal, outcome.value, expected)
        except (ValueError, TypeError) as exc:  # wrong count, NaN, text, not a list
            return f"{type(exc).__name__}: {exc}"

    def _fail(self, signal: Signal, sample, completion, error: str, detail: str, failures: list) -> None:
        """One sample's check failed (it scores None): the error is kept and recorded."""
        failures.append(error)
        self._record_failure(signal.name, sample, completion, error, detail)

    @staticmethod
    def _checked(signal: Signal, scores, expected: int) -> list[Optional[float]]:
        scores = list(scores)
        if len(scores) != expected:
            raise ValueError(f"verifier {signal.name!r} returned {len(scores)} scores for {expected} completions")
        for v in scores:
            if v is not None and not (isinstance(v, (int, float)) and math.isfinite(v)):
                raise ValueError(f"verifier {signal.name!r} returned a non-finite or non-numeric score {v!r}")
        return scores

    def _record_failure(self, name: str, sample: Sample, completion: str, error: str, detail: str) -> None:
        if self.failures_path is None:
            return
        entry = {
            "signal": name, "task": sample.task, "prompt": sample.prompt, "reference": sample.reference,
            "completion": completion, "error": error, "detail": detail,
        }
        with open(self.failures_path, "a") as fh:
            fh.write(json.dumps(entry) + "\n")
