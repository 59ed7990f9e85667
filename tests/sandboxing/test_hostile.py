"""The next layer of attacks (issue 27): forged verdicts through replaced names and control-flow
exceptions, the judge's own limits, the kernel surfaces a program must not reach, and state
that must not survive from one job to the next. Each program's `add` is wrong, so a `pass`
proves forgery; each runs in a one-shot sandbox (`run_tests`) and in the warm pool."""
import time

import pytest

from sandbox import Job, SandboxPool, SandboxSettings, run_tests
from sandboxing.conftest import ADD_OK
from sandboxing.hostile import (
    ADD_TESTS,
    CONTEXT,
    CONTROL_FLOW,
    JUDGE_LIMITS,
    NAME_FORGERY,
    SYSCALL_TESTS,
    SYSCALLS,
)
from sandboxing.hostile_heldout import HELDOUT, HELDOUT_SYSCALLS

CASES = NAME_FORGERY + CONTROL_FLOW + JUDGE_LIMITS + HELDOUT
TIMEOUT_S = 3.0


@pytest.fixture(scope="module")
def warm_pool():
    with SandboxPool(SandboxSettings(workers=2, timeout_s=TIMEOUT_S, jobs_per_sandbox=1000)) as p:
        yield p


@pytest.mark.parametrize("name, program, tests, expose", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("mode", ["one_shot", "warm_pool"])
def test_a_hostile_program_never_passes_and_never_stalls_the_judge(warm_pool, mode, name,
                                                                   program, tests, expose):
    context = CONTEXT.get(name, "")
    started = time.monotonic()
    if mode == "one_shot":
        result = run_tests(program, tests, timeout_s=TIMEOUT_S, memory_mb=512, context=context,
                           expose=expose)
    else:
        result = warm_pool.run(Job(program, tests, context, expose))
    assert result.status != "pass", result
    assert time.monotonic() - started < TIMEOUT_S + 2.5, result  # no stall up to the backstop
    if mode == "warm_pool":  # and the pool still scores correct programs
        assert warm_pool.run(Job(ADD_OK, ADD_TESTS)).passed


@pytest.mark.parametrize("program", [SYSCALLS, HELDOUT_SYSCALLS], ids=["dev", "heldout"])
@pytest.mark.parametrize("mode", ["one_shot", "warm_pool"])
def test_the_kernel_surfaces_pid_1_and_the_judge_are_out_of_reach(warm_pool, mode, program):
    """The program reports which attempts succeeded; the tests pass only if none did."""
    tests = "assert add(2, 3) == []\n"
    if mode == "one_shot":
        result = run_tests(program, tests, timeout_s=TIMEOUT_S, memory_mb=512)
    else:
        result = warm_pool.run(Job(program, tests))
    assert result.passed, result
    # the same program with the plain tests fails: its add is wrong
    assert run_tests(SYSCALLS, SYSCALL_TESTS, timeout_s=TIMEOUT_S, memory_mb=512).status == "fail"


PLANT = r"""
import os
def add(a, b):
    return 0
open('/dev/shm/planted', 'w').write('x')
os.makedirs('/tmp/planted_dir', exist_ok=True)
os.chdir('/tmp')
for _ in range(2100):  # a chain deeper than the path limit: a path-based wipe cannot reach it
    os.mkdir('dd')
    os.chdir('dd')
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
libc.msgget(0x1234, 0o1000 | 0o600)  # a System V message queue
os.setpriority(os.PRIO_PROCESS, 0, 5)  # its own priority: allowed, and must not stick to pid 1
written = 0
try:
    with open('/dev/shm/fill', 'wb') as fh:
        while written < (480 << 20):
            fh.write(b'\0' * (1 << 20))
            written += 1 << 20
except OSError:
    pass
print('shm bytes', written)
"""
INSPECT = r"""
import os
def traces():
    found = [f'/tmp/{n}' for n in os.listdir('/tmp') if n != 'job']
    found += [f'/dev/shm/{n}' for n in os.listdir('/dev/shm')]
    with open('/proc/sysvipc/msg') as fh:
        found += ['msg queue'] * (len(fh.read().splitlines()) - 1)
    if os.getpriority(os.PRIO_PROCESS, 1) != 0:
        found.append('pid 1 reniced')
    return found
def add(a, b):
    return a + b
"""


def test_nothing_of_a_job_survives_into_the_next_in_a_warm_sandbox(single_pool):
    planted = single_pool.run(Job(PLANT, ADD_TESTS))
    assert planted.status == "fail"
    shm_bytes = int(planted.output.split("shm bytes")[-1])
    assert shm_bytes <= single_pool.settings.tmp_size_mb << 20  # /dev/shm is size-limited too
    later = single_pool.run(Job(INSPECT, "assert traces() == []\n" + ADD_TESTS))
    assert later.passed, later


def test_one_job_cannot_break_the_sandbox_for_the_next(single_pool):
    breaker = ("import os, resource\ntry:\n    resource.prlimit(1, resource.RLIMIT_NOFILE, "
               "(3, 3))\nexcept OSError:\n    pass\nresource.setrlimit(resource.RLIMIT_NOFILE, "
               "(3, 3))\n" + "def add(a, b):\n    return 0\n")
    assert single_pool.run(Job(breaker, ADD_TESTS)).status == "fail"
    for _ in range(5):
        assert single_pool.run(Job(ADD_OK, ADD_TESTS)).passed


def test_the_judge_runs_under_its_own_memory_limit(warm_pool):
    """The trusted tests run in the judge: they can see its address-space limit."""
    tests = ("import resource\nassert resource.getrlimit(resource.RLIMIT_AS)[0] == 1 << 30\n"
             + ADD_TESTS)
    assert warm_pool.run(Job(ADD_OK, tests)).passed
