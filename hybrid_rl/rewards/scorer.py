"""Scoring completions with each reward signal of their task, and combining the signals.

Each signal is kept and logged under its own name; hybrid_rl/rewards/composition.py sums them
into the reward GRPO uses.
A verifier that fails is never allowed to score a batch as 0 silently: in-process, a batch
that raises is retried sample by sample; in the worker pool a chunk that fails is scored again
one sample per call. The failing samples get None (no opinion) and are written to a failures
file, and the error count is reported per signal every step.

A flagged score that is the verifier's or the machine's doing (`Flagged(..., record=True)`: a
broken sandbox, a math check that timed out) counts as a failure too: a signal whose share of
failed or flagged scores over its last `error_window` calls passes `max_error_rate` stops the
run, so a verifier that silently scores 0 everywhere cannot train on zeros.
"""

from __future__ import annotations

import json
import math
import traceback
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

from hybrid_rl.data.samples import Sample
from hybrid_rl.rewards.composition import SignalRule
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
    # signal -> checks that failed (not timeouts)
    errors: dict[str, int] = field(default_factory=dict)
    timeouts: dict[str, int] = field(default_factory=dict)  # signal -> checks that ran out of time
    # signal -> failures written to the failures file (the verifier's or the machine's doing; the
    # rest, like model-written code that does not compile, is only counted)
    recorded: dict[str, int] = field(default_factory=dict)


def _call_batch(verifier: Verifier):
    """A batch call of a verifier, as run inside a pool worker."""
    return lambda completions, references, samples: verifier(
        completions, references, samples=samples
    )


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
        error_window: int = 1, rules: Optional[dict[str, dict[str, SignalRule]]] = None,
        gate_failures_scored: float = 1.0,
    ):
        self.signals_by_task = signals_by_task
        # task -> signal -> how it enters the reward: the composer's rules, whose gates say
        # which scores the reward can use
        self.rules = rules or {}
        # share of groups in which a gated signal also scores the completions that failed its gate
        self.gate_failures_scored = gate_failures_scored
        self.failures_path = failures_path
        self.max_error_rate = max_error_rate
        # (signal, task) -> (failed or flagged, scored) of its latest `error_window` calls
        self._recent: dict[tuple[str, str], deque] = {}
        self.error_window = error_window
        self.signal_names = sorted({s.name for s in self.signals()})
        # signal -> its function's index in the pool
        self._pool_index = {id(s): i for i, s in enumerate(self.signals())}
        self.pool = None
        if num_workers > 0:
            functions = [_call_batch(s.verifier) for s in self.signals()]
            self.pool = WorkerPool(functions, num_workers=num_workers, timeout_s=timeout_s)

    def signals(self) -> list[Signal]:
        """Every task's signals, in order."""
        return [s for sigs in self.signals_by_task.values() for s in sigs]

    def unisolated_signals(self) -> list[str]:
        """Signals whose verifier runs model-written code without isolation."""
        return sorted({s.name for s in self.signals() if getattr(s.verifier, "unisolated", False)})

    def close(self) -> None:
        """Stop the worker pool and every verifier that holds workers of its own (sandboxes)."""
        if self.pool is not None:
            self.pool.close()
        for signal in self.signals():
            if hasattr(signal.verifier, "close"):
                signal.verifier.close()

    def score(self, samples: Sequence[Sample], completions: Sequence[str],
              meanwhile: Optional[Callable[[], None]] = None,
              group_size: Optional[int] = None) -> SignalScores:
        """Every signal's scores. `meanwhile` runs in this process while the pool's workers
        score (the trainer's reference pass), so the two overlap.

        `group_size` (training rollouts, in groups of that many): a gated signal that runs in
        this process (the reward model) scores only what can change the reward: the completions
        that passed its gate, and, when it is z-scored per group, only in groups where they
        differ (a group's one distinct passing answer has z-score 0 whatever its score). In
        `gate_failures_scored` of the groups it scores every completion (None elsewhere), so
        the hacking watch still compares it with the verifier, wrong answers included.
        Evaluations pass no group size and get every score."""
        values = {name: [None] * len(samples)
                  for name in self.signal_names + self.diagnostic_names()}
        errors = {name: 0 for name in self.signal_names}
        timeouts = {name: 0 for name in self.signal_names}
        recorded = {name: 0 for name in self.signal_names}
        plan = []  # (task, signal, the task's rows)
        for task, signals in self.signals_by_task.items():
            rows = [i for i, s in enumerate(samples) if s.task == task]
            plan += [(task, signal, rows) for signal in signals if rows]
        # Every pool-scored signal's chunks go out in one job, before `meanwhile` runs.
        chunks = {
            k: self._chunks(len(rows))
            for k, (_, signal, rows) in enumerate(plan)
            if self._in_worker_pool(signal)
        }
        job = self.pool.start([
            item for k, (_, signal, rows) in enumerate(plan) if k in chunks
            for item in self._pool_items(signal, chunks[k], [samples[i] for i in rows],
                                         [completions[i] for i in rows])
        ]) if chunks else None
        try:
            if meanwhile is not None:
                meanwhile()
        finally:
            outcomes = self.pool.finish(job) if job is not None else []
        by_plan = {}  # plan index -> its chunks' outcomes
        for k, k_chunks in chunks.items():
            by_plan[k], outcomes = outcomes[: len(k_chunks)], outcomes[len(k_chunks):]
        # Gated signals scored here go last, once their gates' scores are in.
        for k in sorted(range(len(plan)),
                        key=lambda k: k not in chunks and self._gate(*plan[k][:2]) is not None):
            task, signal, rows = plan[k]
            if k not in chunks and group_size:
                rows = self._worth_scoring(task, signal, rows, values, completions, group_size)
            picked, texts = [samples[i] for i in rows], [completions[i] for i in rows]
            if k in chunks:
                scores, failures = self._finish_in_worker_pool(
                    signal, chunks[k], by_plan[k], picked, texts
                )
            else:
                scores, failures, series = self._run(signal, picked, texts) if rows else \
                    ([], [], {})
                for key, per_row in series.items():
                    for i, v in zip(rows, per_row):
                        values[f"{signal.name}/{key}"][i] = v
            for i, v in zip(rows, scores):
                values[signal.name][i] = v
                if isinstance(v, Flagged) and v.record:  # a valid score with a reason to doubt it
                    self._record_failure(
                        signal.name, samples[i], completions[i], v.reason, v.reason
                    )
            reasons = failures + [v.reason for v in scores if isinstance(v, Flagged)]
            recorded[signal.name] += len(failures) + sum(
                isinstance(v, Flagged) and v.record for v in scores
            )
            timed_out = sum("timed out" in r for r in reasons)
            timeouts[signal.name] += timed_out
            errors[signal.name] += len(reasons) - timed_out
            self._check_rate(signal.name, task, len(rows), failures, scores)
        return SignalScores(values, errors, timeouts, recorded)

    def diagnostic_names(self) -> list[str]:
        """The series in-process verifiers report beside their scores (`diagnostics`, e.g. a
        reward-model ensemble's disagreement), as `<signal>/<series>`: per-completion values
        that the reward does not use and the metrics log."""
        return sorted({f"{s.name}/{key}" for s in self.signals()
                       for key in getattr(s.verifier, "diagnostics", ())})

    def _gate(self, task: str, signal: Signal) -> Optional[SignalRule]:
        """The signal's rule when it is gated on another signal, else None."""
        rule = self.rules.get(task, {}).get(signal.name)
        return rule if rule is not None and rule.gate is not None else None

    def _worth_scoring(self, task: str, signal: Signal, rows: list[int], values: dict,
                       completions: Sequence[str], group_size: int) -> list[int]:
        """The rows a gated signal's score can matter for (see `score`)."""
        rule = self._gate(task, signal)
        if rule is None or rule.gate not in values:
            return rows
        gate_values, share = values[rule.gate], self.gate_failures_scored
        passed = {i for i in rows if rule.passes_gate(gate_values[i])}
        passing_texts: dict[int, set] = {}  # group -> its distinct passing completions
        for i in passed:
            passing_texts.setdefault(i // group_size, set()).add(completions[i])

        def matters(i: int) -> bool:
            group = i // group_size
            if math.fmod(group * share, 1.0) < share:  # watched: every completion
                return True
            return i in passed and (rule.normalize != "group" or len(passing_texts[group]) > 1)

        return [i for i in rows if matters(i)]

    def _check_rate(self, name: str, task: str, scored: int, failures: list[str],
                    scores: list) -> None:
        """Raise when failed plus flagged-by-the-machine scores pass max_error_rate over the
        signal's latest `error_window` calls for this task."""
        flagged = [v.reason for v in scores if isinstance(v, Flagged) and v.record]
        recent = self._recent.setdefault((name, task), deque(maxlen=self.error_window))
        recent.append((len(failures) + len(flagged), scored))
        bad, total = sum(b for b, _ in recent), sum(n for _, n in recent)
        if bad <= self.max_error_rate * total:
            return
        last = (failures + flagged)[-1] if failures or flagged else "(earlier calls)"
        calls = f" over the last {len(recent)} calls" if len(recent) > 1 else ""
        raise RewardFailure(
            f"verifier {name!r} failed on {bad} of {total} {task!r} completions{calls} "
            f"(> reward.max_error_rate={self.max_error_rate}; flagged scores such as timeouts "
            f"and sandbox errors count); last error: {last}; "
            f"every failing sample is in {self.failures_path}"
        )

    def _in_worker_pool(self, signal: Signal) -> bool:
        """Scored in the worker pool; a verifier that isolates itself (the code sandbox) is
        called from this process."""
        return self.pool is not None and not getattr(signal.verifier, "runs_isolated", False)

    def _run(self, signal: Signal, samples, completions) -> tuple[list, list[str], dict]:
        """(scores, one error message per failed sample, the verifier's diagnostic series
        aligned with the samples)."""
        refs = [s.reference for s in samples]
        try:
            scores = self._checked(
                signal, signal.verifier(completions, refs, samples=samples), len(samples)
            )
            return scores, [], _diagnostics(signal.verifier, len(samples))
        except Exception:  # isolate the offending samples: retry one by one
            pass
        scores, failures = [], []
        series: dict[str, list] = {k: [] for k in getattr(signal.verifier, "diagnostics", ())}
        for sample, completion in zip(samples, completions):
            try:
                one = signal.verifier([completion], [sample.reference], samples=[sample])
                scores.append(self._checked(signal, one, 1)[0])
                found = _diagnostics(signal.verifier, 1)
            except Exception as exc:
                scores.append(None)
                found = {}
                self._fail(signal, sample, completion, f"{type(exc).__name__}: {exc}",
                           traceback.format_exc(limit=5), failures)
            for key, column in series.items():
                column.append(found.get(key, [None])[0])
        return scores, failures, series

    def _chunks(self, n: int) -> list[range]:
        size = -(-n // self.pool.num_workers)  # one chunk per worker
        return [range(i, min(i + size, n)) for i in range(0, n, size)]

    def _finish_in_worker_pool(self, signal: Signal, chunks: list[range], outcomes, samples,
                               completions) -> tuple[list[Optional[float]], list[str]]:
        """Scores from the chunks' outcomes; a failed chunk is scored again one sample per call."""
        scores: list = [None] * len(samples)
        errors: dict[int, str] = {}
        for chunk, outcome in zip(chunks, outcomes):
            values = self._valid(signal, outcome, len(chunk))
            if isinstance(values, list):
                for i, v in zip(chunk, values):
                    scores[i] = v
            else:  # a failed chunk: find the offending samples one call each
                errors.update({i: "" for i in chunk})
        singles = [range(i, i + 1) for i in sorted(errors)]
        for single, outcome in zip(
            singles, self.pool.run(self._pool_items(signal, singles, samples, completions))
        ):
            values = self._valid(signal, outcome, 1)
            if isinstance(values, list):
                scores[single[0]] = values[0]
                del errors[single[0]]
            else:
                errors[single[0]] = values
        failures = []
        for i in sorted(errors):
            self._fail(
                signal, samples[i], completions[i], errors[i].splitlines()[0], errors[i], failures
            )
        return scores, failures

    def _pool_items(self, signal: Signal, chunks: list[range], samples,
                    completions) -> list[tuple[int, tuple]]:
        index = self._pool_index[id(signal)]
        return [
            (
                index,
                (
                    [completions[i] for i in c],
                    [samples[i].reference for i in c],
                    [samples[i] for i in c],
                ),
            )
            for c in chunks
        ]

    def _valid(self, signal: Signal, outcome, expected: int):
        """The checked scores of one pool call, or the error message (str) if it failed."""
        if outcome.error is not None:
            return outcome.error
        try:
            return self._checked(signal, outcome.value, expected)
        except (ValueError, TypeError) as exc:  # wrong count, NaN, text, not a list
            return f"{type(exc).__name__}: {exc}"

    def _fail(self, signal: Signal, sample, completion, error: str, detail: str,
              failures: list) -> None:
        """One sample's check failed (it scores None): the error is kept and recorded."""
        failures.append(error)
        self._record_failure(signal.name, sample, completion, error, detail)

    @staticmethod
    def _checked(signal: Signal, scores, expected: int) -> list[Optional[float]]:
        scores = list(scores)
        if len(scores) != expected:
            raise ValueError(f"verifier {signal.name!r} returned "
                             f"{len(scores)} scores for {expected} completions")
        for v in scores:
            if v is not None and not (isinstance(v, (int, float)) and math.isfinite(v)):
                raise ValueError(f"verifier {signal.name!r} returned a "
                                 f"non-finite or non-numeric score {v!r}")
        return scores

    def _record_failure(self, name: str, sample: Sample, completion: str, error: str,
                        detail: str) -> None:
        if self.failures_path is None:
            return
        entry = {
            "signal": name,
            "task": sample.task,
            "prompt": sample.prompt,
            "reference": sample.reference,
            "completion": completion,
            "error": error,
            "detail": detail,
        }
        with open(self.failures_path, "a") as fh:
            fh.write(json.dumps(entry) + "\n")


def _diagnostics(verifier, expected: int) -> dict[str, list]:
    """The series a verifier reported for its last call (checked for length; none when it
    reports none)."""
    if not getattr(verifier, "diagnostics", ()):
        return {}
    series = verifier.take_diagnostics()
    for key, column in series.items():
        if len(column) != expected:
            raise ValueError(f"diagnostic {key!r}: {len(column)} values for {expected} completions")
    return series
