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
from verifiers.registry import Flagged, register_verifier

_FENCE = re.compile(r"```[ \t]*(?:python3?|py)?[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL | re.IGNORECASE)
CACHE_SIZE = 50_000  # verdicts kept: a policy repeats itself, and tests are deterministic

_settings = SandboxSettings()
_pool: Optional[SandboxPool] = None
_cache: "OrderedDict[tuple, ExecResult]" = OrderedDict()


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


# ------------------------------------------------------------------ pool ----
def configure(cfg) -> None:
    """Use the run's `sandbox` settings (a SandboxSettings or a config node with its fields);
    the sandbox is started and checked here, so a machine that cannot isolate code fails at
    start-up, not in the middle of training."""
    global _settings
    section = getattr(cfg, "sandbox", cfg)
    settings = SandboxSettings(**{k: getattr(section, k) for k in SandboxSettings.__dataclass_fields__})
    if settings != _settings or _pool is None:
        close()
        _settings = settings
    pool()


def pool() -> SandboxPool:
    global _pool
    if _pool is None:
        _pool = SandboxPool(_settings)
    return _pool


def close() -> None:
    global _pool
    if _pool is not None:
        _pool.close()
        _pool = None
    _cache.clear()


def run_jobs(jobs: Sequence[Job]) -> list[ExecResult]:
    """Results for `jobs`, each distinct job run once (batch duplicates and earlier verdicts reused)."""
    keys = [(j.program, j.tests, j.context, None if j.expose is None else tuple(j.expose)) for j in jobs]
    todo = {k: j for k, j in zip(keys, jobs) if k not in _cache}
    for key, result in zip(todo, pool().run_batch(list(todo.values()))):
        if result.status in ("pass", "fail"):  # timeouts and errors may be the machine's: retry later
            _cache[key] = result
            while len(_cache) > CACHE_SIZE:
                _cache.popitem(last=False)
        else:
            _cache.pop(key, None)
        todo[key] = result
    return [todo[k] if k in todo else _cache[k] for k in keys]


# ------------------------------------------------------------- verifiers ----
def _score(result: ExecResult, partial: bool) -> float:
    if result.status == "timeout":
        return Flagged(0.0, f"program timed out: {result.error}", record=False)
    if result.status == "error":
        sandbox_failed = (result.error or "").startswith("the sandbox")
        return Flagged(0.0, f"program error: {result.error}", record=sandbox_failed)
    return result.fraction if partial else float(result.passed)


def _verify(completions, references, samples, partial: bool) -> list[Optional[float]]:
    rows = [i for i, ref in enumerate(references) if ref is not None]
    jobs = []
    for i in rows:
        meta = samples[i].meta if samples is not None else {}
        entry = meta.get("entry_point")
        jobs.append(Job(build_program(completions[i], meta), references[i], meta.get("context", ""),
                        [entry] if entry else None))
    scores: list[Optional[float]] = [None] * len(completions)
    for i, result in zip(rows, run_jobs(jobs)):
        scores[i] = _score(result, partial)
    return scores


@register_verifier("code")
def code_verifier(completions: Sequence[str], references: Sequence[Optional[str]], **fields) -> list[Optional[float]]:
    """1.0 when every assert of the sample's tests held, else 0.0 (None: no tests)."""
    return _verify(completions, references, fields.get("samples"), partial=False)


@register_verifier("code_fraction")
def code_fraction_verifier(completions: Sequence[str], references: Sequence[Optional[str]], **fields) -> list[Optional[float]]:
    """Share of the sample's asserts that held (None: no tests)."""
    return _verify(completions, references, fields.get("samples"), partial=True)


for _verifier in (code_verifier, code_fraction_verifier):
    _verifier.runs_isolated = True
    _verifier.configure = configure

__all__ = ["build_program", "close", "configure", "extract_code", "run_jobs"]
