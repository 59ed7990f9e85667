"""A pass must be earned: every trick a program can play on a test harness, one per test."""
import pytest

from sandbox import Job, run_tests

from .conftest import ADD_OK, ADD_TESTS


def test_correct_program_passes(run):
    result = run(ADD_OK)
    assert (result.status, result.passed_units, result.total_units, result.fraction) == (
        "pass",
        2,
        2,
        1.0,
    )


def test_wrong_program_fails_with_partial_credit(run):
    result = run("def add(a, b):\n    return a + b if a > 0 else 7\n")
    assert (result.status, result.passed_units, result.total_units) == ("fail", 1, 2)
    assert result.fraction == 0.5
    assert "assertion(s) [1] failed" in result.error


def test_program_that_does_not_compile_is_an_error(run):
    result = run("def add(a, b)\n    return a + b\n")
    assert result.status == "error" and "SyntaxError" in result.error


def test_exception_in_the_program_fails_that_assert_only(run):
    result = run("def add(a, b):\n    if a < 0:\n        raise KeyError(a)\n    return a + b\n")
    assert (result.status, result.passed_units) == ("fail", 1)


def test_expected_exceptions_keep_their_builtin_type(run):
    tests = "try:\n    add(1, 'x')\nexcept TypeError:\n    pass\nelse:\n    assert False\n"
    assert run(ADD_OK, tests).passed


@pytest.mark.parametrize("trick", [
    "import sys\nsys.exit(0)", "raise SystemExit(0)", "import os\nos._exit(0)",
    "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)",
])
def test_exiting_early_at_load_is_not_a_pass(run, trick):
    assert run(trick + "\n" + ADD_OK).status == "error"


@pytest.mark.parametrize("trick", ["import sys\n        sys.exit(0)", "import os\n        "
                                                                      "os._exit(0)"])
def test_exiting_during_the_tests_is_not_a_pass(run, trick):
    program = ("calls = []\ndef add(a, b):\n    calls.append(1)\n    if len(calls) == 2:\n       "
               f" {trick}\n    return a + b\n")
    result = run(program)
    assert result.status != "pass" and result.passed_units == 1


def test_atexit_and_excepthook_cannot_report_success(run):
    program = """
import atexit, sys
atexit.register(lambda: print('PASS ALL TESTS OK'))
sys.excepthook = lambda *a: print('PASS')
def add(a, b):
    raise AssertionError('hidden')
"""
    assert run(program).status == "fail"


def test_patched_builtins_do_not_reach_the_tests(run):
    program = """
import builtins
builtins.AssertionError = type('Never', (Exception,), {})
builtins.bool = lambda x: True
builtins.isinstance = lambda *a: True
def add(a, b):
    return 0
"""
    assert run(program).status == "fail"


def test_patched_unittest_does_not_reach_the_tests(run):
    program = ("import unittest\nunittest.TestCase.assertEqual = "
               "lambda *a, **k: None\ndef add(a, b):\n    return 0\n")
    tests = "import unittest\nunittest.TestCase().assertEqual(add(2, 3), 5)\n"
    assert run(program, tests).status == "fail"


def test_printed_markers_and_fake_frames_are_ignored(run):
    program = """
import os, sys
print('PASS\\nall tests passed\\nOK')
frame = b'{"status": "pass"}'
os.write(1, len(frame).to_bytes(4, 'big') + frame)
sys.stdout.flush()
def add(a, b):
    return -1
"""
    assert run(program).status == "fail"


def test_always_equal_object_cannot_cross_into_the_tests(run):
    program = """
class Anything:
    def __eq__(self, other): return True
    def __ne__(self, other): return False
    def __bool__(self): return True
def add(a, b):
    return Anything()
"""
    result = run(program)
    assert result.status == "fail" and result.passed_units == 0


def test_builtin_subclass_with_forged_equality_cannot_cross(run):
    program = ("class Int(int):\n    def __eq__(self, other): return True\n    __hash__ = "
               "int.__hash__\ndef add(a, b):\n    return Int(0)\n")
    assert run(program).status == "fail"


def test_values_cross_as_genuine_builtins(run):
    program = "def add(a, b):\n    return [a, (b, {'k': {1.5}}), None, b'x']\n"
    tests = "r = add(1, 2)\nassert type(r) is list and r == [1, (2, {'k': {1.5}}), None, b'x']\n"
    assert run(program, tests).passed


@pytest.mark.parametrize("target, sig", [("os.getppid()", "SIGKILL"), ("os.getppid()", "SIGSTOP"),
                                         ("1", "SIGKILL"), ("1", "SIGINT"), ("-1", "SIGKILL")])
def test_the_judge_and_pid_1_are_out_of_the_programs_reach(run, target, sig):
    """The syscall filter refuses signals to the judge, to pid 1 and to every process (-1):
    the call fails inside the program, and nothing it does makes a pass."""
    program = (f"import os, signal\ndef add(a, b):\n    try:\n        os.kill({target}, "
               f"signal.{sig})\n    except PermissionError:\n        return 'refused'\n"
               "    return 'delivered'\n")
    assert run(program, "assert add(2, 3) == 'refused'\n").passed
    assert run(ADD_OK).passed  # and the sandbox still works


def test_program_cannot_read_its_tests(run):
    program = """
import gc, os, sys
seen = [str(o)[:200] for o in gc.get_objects() if isinstance(o, str) and 'SECRET_EXPECTED' in o]
def add(a, b):
    return len(seen)
"""
    assert run(program, "assert add(1, 1) == 0  # SECRET_EXPECTED\n").passed


def test_redefined_helpers_do_not_replace_the_trusted_context(run):
    context = "def helper(x):\n    return x * 2\n"
    program = "def helper(x):\n    return 0\ndef add(a, b):\n    return 123\n"
    tests = "assert helper(add(1, 2)) == 6\n"  # helper must come from the context
    assert run(program, tests, context=context, expose=["add"]).status == "fail"


def test_run_tests_is_self_contained():
    assert run_tests(ADD_OK, ADD_TESTS, timeout_s=5, memory_mb=256).passed
    assert run_tests(ADD_OK.replace("+", "-"), ADD_TESTS, timeout_s=5,
                     memory_mb=256).status == "fail"


def test_batches_keep_their_order(pool):
    jobs = [Job(f"def add(a, b):\n    return {k}\n",
                f"assert add(0, 0) == {k}\n") for k in range(12)]
    assert all(r.passed for r in pool.run_batch(jobs))
