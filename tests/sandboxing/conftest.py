"""Shared sandbox pools. The tests need bubblewrap: scripts/setup.sh installs it, and a
machine without it fails these tests loudly (SandboxUnavailable) rather than skipping them."""
import os

import pytest

from sandbox import Job, SandboxPool, SandboxSettings

HOST_SECRET = "hunter2-host-secret-value"
ADD_TESTS = "assert add(2, 3) == 5\nassert add(-1, 1) == 0\n"
ADD_OK = "def add(a, b):\n    return a + b\n"


@pytest.fixture(scope="session")
def pool():
    os.environ["HYBRID_RL_TEST_SECRET"] = HOST_SECRET  # must never be visible inside
    with SandboxPool(SandboxSettings(workers=2, timeout_s=3.0, max_processes=8,
                                     max_output_bytes=1000)) as p:
        yield p


@pytest.fixture(scope="session")
def single_pool():
    """One worker: consecutive jobs share a sandbox (tests of the clean-up between jobs)."""
    with SandboxPool(SandboxSettings(workers=1, timeout_s=3.0, jobs_per_sandbox=1000)) as p:
        yield p


@pytest.fixture
def run(pool):
    """run(program, tests=ADD_TESTS) -> ExecResult, the program defining `add`."""
    return lambda program, tests=ADD_TESTS, **kw: pool.run(Job(program, tests, **kw))
