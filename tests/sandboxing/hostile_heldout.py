"""Held-out hostile programs: written after the defences were built, and run against them once
without changing the sandbox (the figure is in sandbox/README.md). Same format as hostile.py:
(name, program, tests, expose); every `add` is wrong, so a `pass` is a forged verdict.
tests/sandboxing/test_hostile.py runs them too, so they stay closed."""
from sandboxing.hostile import ADD_TESTS, RAW, WRONG_ADD

TYPE_TESTS = (
    "assert str(add(2, 3)) == '5'\n"
    "assert int(add(2, 3)) == 5 and type(add(2, 3)) is int\n"
    "assert list(range(add(1, 1))) == [0, 1]\n"
    "assert [i for i, _ in enumerate([add(0, 0)])] == [0]\n"
)

HELDOUT = [
    # names
    ("forged_str_int_type", WRONG_ADD + "def str(x):\n    return '5'\ndef int(x):\n    return 5\n"
     "def type(x):\n    return 0 .__class__\n", TYPE_TESTS, None),
    ("forged_range_enumerate", WRONG_ADD + "def range(n):\n    return [0, 1]\n"
     "def enumerate(x):\n    return [(0, 0)]\n", TYPE_TESTS, None),
    ("forged_all_via_exposed_entry", WRONG_ADD + "def bool(x):\n    return True\n",
     "assert bool(add(2, 3) == 5)\n", ["add"]),
    ("forged_dunder_import", WRONG_ADD + "def __import__(*a, **k):\n    raise SystemExit\n",
     "import math\nassert add(2, 3) == 5\n", None),
    # control flow
    ("stop_iteration_subclass", "class Done(StopIteration):\n    pass\n"
     "def add(a, b):\n    raise Done\n", "assert all(map(lambda i: add(i, i) == 2 * i, [1]))\n",
     None),
    ("stop_iteration_in_zip", "def add(a, b):\n    raise StopIteration\n",
     "assert all(x == y for x, y in zip(map(lambda i: add(i, 1), [1, 2]), [2, 3]))\n", None),
    ("stop_iteration_in_sum", "def add(a, b):\n    raise StopIteration\n",
     "assert sum(map(lambda i: add(i, i), [1, 2])) + 6 == 6 + 6\n", None),
    ("system_exit_in_call", "def add(a, b):\n    raise SystemExit(0)\n", ADD_TESTS, None),
    # decoding and the judge
    ("string_length_bomb", RAW + "send(b'u' + (1 << 31).to_bytes(4, 'little'))\nos._exit(0)\n",
     ADD_TESTS, None),
    ("nested_tuple_reply", RAW + "def add(a, b):\n    v = 5\n    for _ in range(500):\n"
     "        v = (v,)\n    send(marshal.dumps({'value': marshal.dumps(v, 2)}, 2))\n"
     "    os._exit(0)\n", ADD_TESTS, None),
    ("frozenset_refs", RAW + "s = frozenset([1])\nsend(marshal.dumps({'names': ['add'], "
     "'x': [s] * 1000}))\nos._exit(0)\n", ADD_TESTS, None),
    ("fake_verdict_on_stdout", "import os, marshal\nv = marshal.dumps({'status': 'pass', "
     "'passed_units': 2, 'total_units': 2})\nos.write(1, len(v).to_bytes(4, 'big') + v)\n"
     + WRONG_ADD, ADD_TESTS, None),
    ("output_dir_in_place", "import os\nos.unlink('.output')\nos.mkdir('.output')\n" + WRONG_ADD,
     ADD_TESTS, None),
    ("huge_claimed_dict", RAW + "send(b'{' + b'N' * 10)\nos._exit(0)\n", ADD_TESTS, None),
]

HELDOUT_SYSCALLS = """
import ctypes, os, signal
libc = ctypes.CDLL(None, use_errno=True)

def attempts():
    done = []
    for name, call in (
        ('ioprio_pid1', lambda: libc.syscall(251, 1, 1, (3 << 13))),  # ioprio_set(PROCESS, 1)
        ('request_key', lambda: libc.syscall(249, b'user', b'k', None, -3)),
        ('process_vm_readv', lambda: libc.syscall(310, 1, 0, 0, 0, 0, 0)),
        ('perf_event_open', lambda: libc.syscall(298, 0, 0, -1, -1, 0)),
        ('bpf', lambda: libc.syscall(321, 0, 0, 0)),
        ('setns', lambda: libc.syscall(308, 0, 0)),
        ('tgkill_pid1', lambda: libc.syscall(234, 1, 1, signal.SIGTERM)),
        ('pidfd_pid1', lambda: libc.syscall(434, 1, 0)),
        ('userfaultfd', lambda: libc.syscall(323, 0)),
        ('io_uring', lambda: libc.syscall(425, 1, 0)),
    ):
        if call() >= 0:
            done.append(name)
    try:
        os.killpg(1, signal.SIGKILL)
        done.append('killpg_1')
    except OSError:
        pass
    return done

def add(a, b):
    return attempts()
"""
