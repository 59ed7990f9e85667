"""Hostile programs, grouped by the class of attack they try (sandbox/README.md "Threat model").
Every program's `add` is wrong (or missing), so a `pass` can only mean a forged verdict; the
tests that run them are tests/sandboxing/test_hostile.py. Each entry: (name, program, tests,
expose); tests default to ADD_TESTS below.

The frames some programs write by hand use the harness's wire format: 4-byte big-endian
length, then a marshal payload, on fd 4 (the program's reply pipe)."""

ADD_TESTS = "assert add(2, 3) == 5\nassert add(-1, 1) == 0\n"
BUILTIN_TESTS = (
    "assert bool(add(2, 3) == 5)\n"
    "assert len([add(1, 1)]) == 1 and sum([add(1, 2)]) == 3\n"
    "assert max(add(1, 1), 0) == 2 and abs(add(-3, 0)) == 3\n"
    "assert all(add(i, i) == 2 * i for i in range(3))\n"
    "assert isinstance(add(1, 1), int) and sorted([add(2, 2), add(0, 1)]) == [1, 4]\n"
)
WRONG_ADD = "def add(a, b):\n    return 0\n"
RAW = ("import marshal, os\ndef send(payload):\n"
       "    os.write(4, len(payload).to_bytes(4, 'big') + payload)\n")

# ------------------------------------------- names the tests rely on, replaced by the program
NAME_FORGERY = [
    ("forged_bool", WRONG_ADD + "def bool(x):\n    return True\n", BUILTIN_TESTS, None),
    ("forged_len_sum", WRONG_ADD + "def len(x):\n    return 1\ndef sum(x):\n    return 3\n",
     BUILTIN_TESTS, None),
    ("forged_max_abs", WRONG_ADD + "def max(*a):\n    return 2\ndef abs(x):\n    return 3\n",
     BUILTIN_TESTS, None),
    ("forged_all", WRONG_ADD + "def all(x):\n    return True\n", BUILTIN_TESTS, None),
    ("forged_isinstance_sorted", WRONG_ADD + "def isinstance(*a):\n    return True\n"
     "def sorted(x):\n    return [1, 4]\n", BUILTIN_TESTS, None),
    ("forged_assertion_error", WRONG_ADD + "class AssertionError(Exception):\n    pass\n",
     ADD_TESTS, None),
    ("forged_context_helper", "def helper(x):\n    return 5\ndef add(a, b):\n    return 0\n",
     "assert helper(add(2, 3)) == 5\n", None),
    ("forged_unit_hook", WRONG_ADD + "def __unit__(i, ok):\n    pass\n", ADD_TESTS, None),
]
CONTEXT = {"forged_context_helper": "def helper(x):\n    return x\n"}

# --------------------------------------- exceptions that would steer the tests' control flow
CONTROL_FLOW = [
    ("stop_iteration_in_all", "def add(a, b):\n    raise StopIteration\n",
     "assert all(map(lambda i: add(i, i) == 2 * i, range(3)))\n", None),
    ("stop_iteration_in_any", "def add(a, b):\n    raise StopIteration\n",
     "assert not any(map(lambda i: add(i, i) != 2 * i, range(3)))\n", None),
    ("stop_iteration_in_list", "def add(a, b):\n    raise StopIteration\n",
     "assert list(map(lambda i: add(i, i), [1, 2])) == []\nassert add(1, 1) == 2\n", None),
    ("stop_async_iteration", "def add(a, b):\n    raise StopAsyncIteration\n",
     "assert all(map(lambda i: add(i, i) == 2 * i, range(3)))\n", None),
    ("generator_exit", "def add(a, b):\n    raise GeneratorExit\n", ADD_TESTS, None),
    ("keyboard_interrupt", "def add(a, b):\n    raise KeyboardInterrupt\n", ADD_TESTS, None),
    ("returned_generator", "def add(a, b):\n    return (x for x in [5])\n",
     "assert list(add(2, 3)) == [5]\n", None),
]

# -------------------------------------------------- the judge's own limits and decoding
JUDGE_LIMITS = [
    ("list_count_bomb_hello", RAW + "send(b'[' + (1 << 28).to_bytes(4, 'little'))\nos._exit(0)\n",
     ADD_TESTS, None),
    ("long_digits_bomb", RAW + "send(b'l' + (1 << 30).to_bytes(4, 'little'))\nos._exit(0)\n",
     ADD_TESTS, None),
    ("shared_value_bomb", RAW + "x = []\nfor _ in range(40):\n    x = [x, x]\n"
     "send(marshal.dumps({'names': ['add'], 'x': x}))\nos._exit(0)\n", ADD_TESTS, None),
    ("self_reference", RAW + "x = []\nx.append(x)\nsend(marshal.dumps({'names': x}))\n"
     "os._exit(0)\n", ADD_TESTS, None),
    ("deep_nesting", RAW + "send(b'[\\x01\\x00\\x00\\x00' * 100000 + b'N')\nos._exit(0)\n",
     ADD_TESTS, None),
    ("code_object_reply", RAW + "def add(a, b):\n    send(marshal.dumps({'value': marshal.dumps("
     "compile('5', 'x', 'eval'))}, 2))\n    os._exit(0)\n", ADD_TESTS, None),
    ("reply_value_bomb", RAW + "def add(a, b):\n    send(marshal.dumps({'value': b'[' + "
     "(1 << 29).to_bytes(4, 'little')}, 2))\n    os._exit(0)\n", ADD_TESTS, None),
    ("fifo_output", "import os\nos.unlink('.output')\nos.mkfifo('.output')\n" + WRONG_ADD,
     ADD_TESTS, None),
    ("output_symlink_to_dev_zero", "import os\nos.unlink('.output')\n"
     "os.symlink('/dev/zero', '.output')\n" + WRONG_ADD, ADD_TESTS, None),
]

# ------------------------------------- reaching the kernel, pid 1 and the judge (must fail)
SYSCALLS = """
import ctypes, os, resource, signal
libc = ctypes.CDLL(None, use_errno=True)

def attempts():
    done = []
    if libc.syscall(250, 0, -3, 0) >= 0:  # keyctl(GET_KEYRING_ID, session keyring)
        done.append('keyctl')
    if libc.syscall(248, b'user', b'planted', b'x', 1, -3) >= 0:  # add_key into the session
        done.append('add_key')
    if libc.syscall(101, 16, 1, 0, 0) == 0:  # ptrace(ATTACH, pid 1)
        done.append('ptrace')
    if libc.syscall(272, 0x20000) == 0:  # unshare(CLONE_NEWNS)
        done.append('unshare')
    if libc.syscall(240, b'/q', 0o100 | 2, 0o600, None) >= 0:  # mq_open(O_CREAT)
        done.append('mq_open')
    for name, call in (
        ('prlimit_pid1', lambda: resource.prlimit(1, resource.RLIMIT_NOFILE, (3, 3))),
        ('renice_pid1', lambda: os.setpriority(os.PRIO_PROCESS, 1, 19)),
        ('renice_judge', lambda: os.setpriority(os.PRIO_PROCESS, os.getppid(), 19)),
        ('pin_pid1', lambda: os.sched_setaffinity(1, {0})),
        ('idle_pid1', lambda: os.sched_setscheduler(1, os.SCHED_IDLE, os.sched_param(0))),
        ('signal_pid1', lambda: os.kill(1, signal.SIGINT)),
        ('signal_judge', lambda: os.kill(os.getppid(), signal.SIGSTOP)),
        ('signal_all', lambda: os.kill(-1, signal.SIGCONT)),
        ('write_dev', lambda: open('/dev/planted', 'w').write('x')),
        ('write_usr_local', lambda: open('/usr/local/planted', 'w').write('x')),
    ):
        try:
            call()
            done.append(name)
        except OSError:
            pass
    return done

def add(a, b):
    return attempts()
"""
SYSCALL_TESTS = "assert add(2, 3) == 5\n"

__all__ = ["ADD_TESTS", "CONTEXT", "CONTROL_FLOW", "JUDGE_LIMITS", "NAME_FORGERY", "SYSCALLS",
           "SYSCALL_TESTS"]
