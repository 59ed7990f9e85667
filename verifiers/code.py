"""Code verifier: model-written code runs against each sample's unit tests in the sandbox.

A sample's `reference` is its test code (trusted: its `assert`s are the units counted); its
`meta` may carry
- `entry_point`: the function the tests call (only that name is reachable from the tests);
- `context`: trusted code run before the tests in the judge, e.g. HumanEval's prompt with its
  helper functions, so a program cannot redefine what the tests rely on;
- `program_prefix`: text put before the extracted code when the code is a continuation (a
  function body) rather than a whole function.

Two registered verifiers: `code` scores 1.0 when every assert held, else 0.0; `code_fraction`
scores the share of asserts that held. Timeouts score 0 and are counted as timeouts; programs
that do not load or crash score 0 and are counted as errors (reward/<signal>/errors), without
filling the failures file; a sandbox that itself fails is recorded there.
"""
from __future__ import annotations

import re
from collections import OrderedDict
from typing import Optional, Sequence

from sandbox import ExecResult, Job, SandboxPool, SandboxSettings
from verifiers.registry import Flagged

_FENCE = re.compile(r"```[ \t]*(?:python3?|py)?[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL | re.IGNORECASE)
CACHE_SIZE = 50_000  # verdicts kept: a policy repeats itself, and tests are deterministic



# ------------------------------------------------------------ extraction ----
def extract_code(completion: str) -> str:
    """The code in a completion: the last fenced block that defines a function (else the last
    fenced block), or the raw completion when it has no fence."""
    blocks = _FENCE.findall(completion)
    if not blocks:
        return completion
    with_def = [b for b in blocks if re.search(r"^\s*def\s", b, re.MULTILINE)]
    return (with_def or blocks)[-1]


def build_program(completion: str, meta: dict) -> str:
    """Program text for a completion: a whole function goes after the trusted context (its
    imports), a continuation after the prompt's code (`program_prefix`)."""
    code = extract_code(completion)
    entry = meta.get("entry_point")
    if entry and re.search(rf"^\s*def\s+{re.escape(entry)}\s*\(", code, re.MULTILINE):
        return meta.get("context", "") + "\n" + code
    return meta.get("program_prefix", "") + code


# ------------------------------------------------------------- verifiers ----
def _score(result: ExecResult, partial: bool) -> float:
    if result.status == "timeout":
        return Flagged(0.0, f"program timed out: {result.error}", record=False)
    if result.status == "error":
        sandbox_failed = (result.error or "").startswith("the sandbox")
        return Flagged(0.0, f"program error: {result.error}", record=sandbox_failed)
    return result.fraction if partial else float(result.passed)


class CodeVerifier:
    """`verifier: code`: 1.0 when every assert of the sample's tests held, else 0.0 (None: no
    tests). Runs each program in its own sandbox (sandbox/README.md); distinct jobs run once,
    and pass/fail verdicts are cached (a policy repeats itself and tests are deterministic).

    The sandbox is started and checked in the constructor, so a machine that cannot isolate
    code fails at start-up, not in the middle of training.
    """

    runs_isolated = True  # isolates and time-limits its own work (see verifiers.Verifier)
    partial = False  # CodeFractionVerifier: the share of asserts that held

    def __init__(self, sandbox: Optional[SandboxSettings] = None):
        section = sandbox if sandbox is not None else SandboxSettings()
        fields = SandboxSettings.__dataclass_fields__
        self.settings = SandboxSettings(**{k: getattr(section, k) for k in fields})
        self.pool = SandboxPool(self.settings)
        # runs model-written code without isolation: the trainer logs it (sandbox/unsafe)
        self.unisolated = self.settings.backend == "unsafe_local"
        self._cache: "OrderedDict[tuple, ExecResult]" = OrderedDict()

    def __call__(self, completions: Sequence[str], references: Sequence[Optional[str]],
                 **fields) -> list[Optional[float]]:
        samples = fields.get("samples")
        rows = [i for i, ref in enumerate(references) if ref is not None]
        jobs = []
        for i in rows:
            meta = samples[i].meta if samples is not None else {}
            entry = meta.get("entry_point")
            jobs.append(Job(build_program(completions[i], meta), references[i],
                            meta.get("context", ""), [entry] if entry else None))
        scores: list[Optional[float]] = [None] * len(completions)
        for i, result in zip(rows, self.run_jobs(jobs)):
            scores[i] = _score(result, self.partial)
        return scores

    def run_jobs(self, jobs: Sequence[Job]) -> list[ExecResult]:
        """Results for `jobs`, each distinct job run once (batch duplicates and earlier
        verdicts reused)."""
        keys = [
            (j.program, j.tests, j.context, None if j.expose is None else tuple(j.expose))
            for j in jobs
        ]
        todo = {k: j for k, j in zip(keys, jobs) if k not in self._cache}
        for key, result in zip(todo, self.pool.run_batch(list(todo.values()))):
            if result.status in ("pass", "fail"):  # timeouts and errors may be the machine's
                self._cache[key] = result
                while len(self._cache) > CACHE_SIZE:
                    self._cache.popitem(last=False)
            todo[key] = result
        return [todo[k] if k in todo else self._cache[k] for k in keys]

    def close(self) -> None:
        self.pool.close()
        self._cache.clear()


class CodeFractionVerifier(CodeVerifier):
    """`verifier: code_fraction`: the share of the sample's asserts that held (None: no tests)."""

    partial = True


__all__ = ["CodeFractionVerifier", "CodeVerifier", "build_program", "extract_code"]
