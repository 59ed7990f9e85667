"""Isolated execution of model-written code against trusted unit tests.

    from sandbox import SandboxPool, SandboxSettings, Job, run_tests
    result = run_tests("def add(a, b):\\n    return a + b\\n", "assert add(2, 3) == 5\\n",
                       timeout_s=5, memory_mb=512)
    result.status  # 'pass' | 'fail' | 'timeout' | 'error'

Imports nothing from `hybrid_rl` or `verifiers`, so any evaluator can use it on its own.
The threat model (what is isolated, how a pass is proven, what is not covered) is in
sandbox/README.md.
"""
from sandbox.launch import SandboxSettings, SandboxUnavailable
from sandbox.pool import ExecResult, Job, SandboxPool, run_tests

__all__ = ["ExecResult", "Job", "SandboxPool", "SandboxSettings", "SandboxUnavailable", "run_tests"]
