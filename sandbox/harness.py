"""The in-sandbox side of `sandbox`: started as `python -I -S harness.py`, standard library only.

Three processes, each with its own job (see sandbox/README.md for the threat model):
- the *zygote* (this script's main loop) reads one job's program, forks a *judge* for it,
  waits, then wipes every trace of the job (processes, files, IPC objects) before the next;
- the *judge* forks the *program* process, and only then reads the job's tests and the per-job
  secret, so neither is ever in the program's memory. It runs the (trusted) tests itself and
  reaches the program's functions through proxies: every argument and every return value
  crosses a pipe as plain data (marshal of built-in types only), so the values the tests
  compare are genuine ints, strings and lists, never objects the program built. The verdict,
  with the secret, goes to the host on the judge's stdout, which the program cannot reach;
- the *program* process executes the model's code and answers calls.

The zygote makes itself non-dumpable before anything else, and forks inherit that: a program
running under the same uid can then neither ptrace the judge nor open its /proc files. The
program process runs under a syscall filter (harness_seccomp.py) that keeps it away from pid 1,
the judge and kernel surfaces it does not need; framing and the checked decoding of whatever
the program sends are in harness_wire.py.
"""
import builtins
import gc
import marshal
import os
import resource
import signal
import stat
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # harness_wire, harness_seccomp
import harness_cleanup  # noqa: E402
import harness_seccomp  # noqa: E402
from harness_wire import (  # noqa: E402
    Deadline,
    plain_loads,
    read_frame,
    read_payload,
    write_frame,
)

PR_SET_DUMPABLE = 4
SIGKILL = 9
KEYCTL_JOIN_SESSION_KEYRING = {"x86_64": 250, "aarch64": 219}  # the keyctl syscall number
PROGRAM_WIRE_VERSION = 2  # marshal without back-references: what the judge accepts
# Exceptions that steer the judge's control flow (StopIteration ends a map() in an all()):
# the program's arrive as RemoteError instead.
CONTROL_FLOW = (StopIteration, StopAsyncIteration)


class ProgramGone(Exception):
    """The program process exited or broke the call protocol."""


class RemoteError(Exception):
    """The program raised an exception whose type is not a built-in one."""


# --------------------------------------------------------------- program ----
def set_limits(limits):
    cpu = limits["cpu_s"]
    for name, soft in (
        ("RLIMIT_CPU", cpu), ("RLIMIT_AS", limits["memory_bytes"]), ("RLIMIT_NPROC",
                                                                     limits["processes"]),
        ("RLIMIT_FSIZE", limits["file_bytes"]), ("RLIMIT_NOFILE", limits["open_files"]),
            ("RLIMIT_CORE", 0),
    ):
        if soft is not None:
            resource.setrlimit(getattr(resource, name), (soft, soft))


def program_main(job, requests_fd, replies_fd, output_path):
    """The forked program process: never returns."""
    try:
        os.setsid()
        os.chdir(job["workdir"])
        out = os.open(output_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        null = os.open("/dev/null", os.O_RDONLY)
        # stdin, stdout, stderr, call pipes: moved high first so no source is overwritten early
        for high, fd in enumerate((null, out, out, requests_fd, replies_fd), start=200):
            os.dup2(fd, high)
        for target in range(5):
            os.dup2(200 + target, target)
        os.closerange(5, 1 << 16)  # the host channel, the judge's ends, everything else
        os.environ.clear()
        os.environ.update(job["env"])
        set_limits(job["limits"])
        if harness_seccomp.supported():  # the judge is our parent; we lead our own group
            harness_seccomp.install(own_group=os.getpid(), judge=os.getppid())
        elif job["isolated"]:
            raise OSError("no syscall filter for this machine's architecture")
        sys.argv = ["program"]
        namespace = {"__name__": "__sandbox__", "__builtins__": builtins}
        try:
            exec(compile(job["program"], "<program>", "exec"), namespace)
        except BaseException as exc:  # SystemExit too: the program refused to load
            write_frame(4, {"load_error": f"{type(exc).__name__}: {exc}"[:2000]},
                        PROGRAM_WIRE_VERSION)
            raise SystemExit(0)
        callables = sorted(k for k,
                           v in namespace.items() if callable(v) and not k.startswith("__"))
        write_frame(4, {"names": callables}, PROGRAM_WIRE_VERSION)
        serve_calls(namespace)
    finally:
        os._exit(0)


def serve_calls(namespace):
    while True:
        name, args, kwargs = read_frame(3)
        try:
            reply = {"value": marshal.dumps(namespace[name](*args, **kwargs),
                                            PROGRAM_WIRE_VERSION)}
        except BaseException as exc:
            reply = {"raised": type(exc).__name__, "message": str(exc)[:2000]}
        sys.stdout.flush()
        sys.stderr.flush()
        write_frame(4, reply, PROGRAM_WIRE_VERSION)


# ----------------------------------------------------------------- judge ----
class Program:
    """The judge's handle on the program process."""

    def __init__(self, requests_fd, replies_fd, deadline):
        self.requests_fd, self.replies_fd, self.deadline = requests_fd, replies_fd, deadline

    def receive(self):
        """The program's next message, checked as plain data before it is built."""
        try:
            return plain_loads(read_payload(self.replies_fd, self.deadline))
        except (EOFError, OSError, ValueError, TypeError, MemoryError) as exc:
            raise ProgramGone(f"the program process ended or broke the protocol ({exc})") from None

    def call(self, name, args, kwargs):
        try:
            write_frame(self.requests_fd, (name, args, kwargs))
        except (BrokenPipeError, OSError):
            raise ProgramGone("the program process has ended") from None
        except ValueError as exc:  # marshal: an argument that is not plain data
            raise TypeError(f"argument cannot be passed into the sandbox: {exc}") from None
        reply = self.receive()
        if type(reply) is not dict:
            raise ProgramGone("malformed reply")
        if "value" in reply:
            if type(reply["value"]) is not bytes:
                raise ProgramGone("malformed reply")
            try:
                return plain_loads(reply["value"])
            except (EOFError, ValueError, TypeError, MemoryError) as exc:
                raise ProgramGone(f"malformed reply ({exc})") from None
        if "raised" in reply:
            raise program_exception(str(reply["raised"]), str(reply.get("message", "")))
        raise ProgramGone(f"the program could not answer: {str(reply.get('error'))[:200]}")

    def proxy(self, name):
        def call_in_sandbox(*args, **kwargs):
            return self.call(name, args, kwargs)

        call_in_sandbox.__name__ = call_in_sandbox.__qualname__ = name
        return call_in_sandbox


def program_exception(name, message):
    """The exception the tests see for one the program raised: a built-in type keeps its type
    (tests that expect a ValueError still work), except those that steer control flow and
    anything else, which arrive as RemoteError."""
    kind = getattr(builtins, name, None)
    if not (isinstance(kind, type) and issubclass(kind, Exception)) or issubclass(kind,
                                                                                  CONTROL_FLOW):
        return RemoteError(f"{name}: {message}")
    try:
        return kind(message)
    except Exception:  # a type whose constructor wants more (UnicodeDecodeError)
        return RemoteError(f"{name}: {message}")


class Units:
    """Pass/fail of each assert of the tests (rewritten into `__unit__(index, value)` calls).
    The truth of the value is taken here, with the judge's own `bool`, so a test namespace in
    which a name like `bool` was replaced cannot decide it."""

    def __init__(self, total):
        self.total, self.passed, self.failed = total, set(), set()

    def record(self, index, value):
        try:
            ok = builtins.bool(value)
        except Exception:
            ok = False
        (self.passed if ok else self.failed).add(index)

    def passed_count(self):
        return len(self.passed - self.failed)


def judge_main(job):
    """The forked judge: forks the program, then reads the tests and secret; never returns."""
    code = 0
    try:
        start = time.monotonic()
        requests_r, requests_w = os.pipe()
        replies_r, replies_w = os.pipe()
        output_path = os.path.join(job["workdir"], ".output")
        pid = os.fork()
        if pid == 0:  # the host channel (fds 0, 1) is replaced before any program code runs
            program_main(job, requests_r, replies_w, output_path)
        os.close(requests_r)
        os.close(replies_w)
        limit = job["limits"]["judge_memory_bytes"]  # whatever a reply makes it build
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        spec = read_frame(0)  # tests, context, exposed names, secret; only now, after the fork
        deadline = start + spec["timeout_s"]
        verdict = judge(Program(requests_w, replies_r, deadline), spec)
        stop_process_group(pid)
        verdict["output"], verdict["output_bytes"] = read_output(output_path,
                                                                 spec["max_output_bytes"])
        verdict["secret"] = spec["secret"]
        verdict["duration_s"] = time.monotonic() - start
        write_frame(1, verdict)
    except BaseException:
        code = 1
    finally:
        os._exit(code)


def judge(program, spec):
    units = Units(spec["units"])

    def counts():
        return {"passed_units": units.passed_count(), "total_units": units.total}

    try:
        names = hello_names(program.receive())
        namespace = {"__name__": "__tests__", "__builtins__": builtins}
        if spec["context"]:
            exec(compile(spec["context"], "<context>", "exec"), namespace)
        for name in exposed(names, spec["expose"], namespace):
            namespace[name] = program.proxy(name)
        namespace["__unit__"] = units.record
        exec(compile(spec["tests"], "<tests>", "exec"), namespace)
    except Deadline:
        return dict(counts(), status="timeout",
                    error=f"time limit of {spec['timeout_s']} s reached")
    except ProgramGone as exc:
        return dict(counts(), status="error", error=str(exc))
    except BaseException as exc:  # a test step raised (the program's exception, a failed call)
        return dict(counts(), status="fail", error=f"{type(exc).__name__}: {exc}"[:2000])
    if units.failed:
        return dict(counts(), status="fail", error=f"assertion(s) {sorted(units.failed)} failed")
    return dict(counts(), status="pass", error=None)


def exposed(names, declared, namespace):
    """The program names the tests can reach: the task's declared ones, or, when it declares
    none, every callable the program defined except built-in names (`bool`, `len`, `sum`, ...),
    dunder names and what the trusted context defined, which the program can never replace."""
    if declared is not None:
        return declared
    return [n for n in names if not (hasattr(builtins, n) or n.startswith("__") or n in namespace)]


def hello_names(hello):
    """The program's first message: its callable names, or why it failed to load."""
    if type(hello) is dict and "load_error" in hello:
        raise ProgramGone("the program failed to load: " + str(hello["load_error"]))
    if type(hello) is not dict or type(hello.get("names")) is not list:
        raise ProgramGone("malformed first message")
    return [str(name) for name in hello["names"]]


def stop_process_group(pid):
    for target in (-pid, pid):
        try:
            os.kill(target, SIGKILL)
        except OSError:
            pass
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def read_output(path, limit):
    """The program's output file, if it is still a regular file (a FIFO or device put in its
    place would block the judge: it is not read)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
    except OSError:
        return "", 0
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return "(the program replaced its output file)", 0
        return os.read(fd, limit + 1)[:limit].decode("utf-8", "replace"), info.st_size
    except OSError:
        return "", 0
    finally:
        os.close(fd)


# ---------------------------------------------------------------- zygote ----
def make_non_dumpable():
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_DUMPABLE, 0) failed")
    return libc


def join_fresh_session_keyring(libc):
    """Leave the session keyring the trainer was started with (the program cannot reach any
    keyring: its filter refuses the keyring syscalls)."""
    import platform

    number = KEYCTL_JOIN_SESSION_KEYRING.get(platform.machine())
    if number is not None:
        libc.syscall(number, 1, None)  # KEYCTL_JOIN_SESSION_KEYRING(NULL): a new anonymous one


def main():
    libc = make_non_dumpable()
    # pid 1 of a pid namespace gets only the signals it handles: handle none (Python's own
    # SIGINT handler would let a program's SIGINT end the sandbox)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    join_fresh_session_keyring(libc)
    channel_in, channel_out = int(sys.argv[1]), int(sys.argv[2])
    os.dup2(channel_in, 0)  # the host channel: jobs in on 0, verdicts out on 1
    os.dup2(channel_out, 1)
    os.closerange(3, 1 << 16)
    config = read_frame(0)
    baseline = harness_cleanup.own_state()
    gc.freeze()  # forks share the zygote's objects; keep the collector from touching (copying) them
    while True:
        try:
            job = read_frame(0)
        except EOFError:
            return
        job["isolated"] = config["isolated"]
        os.makedirs(job["workdir"], mode=0o700, exist_ok=True)
        pid = os.fork()
        if pid == 0:
            judge_main(job)
        _, status = os.waitpid(pid, 0)
        if status != 0:  # the judge died without a verdict (killed by the program?): say so
            write_frame(
                1, {"status": "error", "error": "the judge process was killed", "secret": None}
            )
        harness_cleanup.clean_up(config["isolated"], libc, config["scratch_dirs"])
        left = harness_cleanup.leftovers(config["isolated"], config["scratch_dirs"], baseline)
        write_frame(1, {"ready": not left, "left": left})
        if status != 0 or left:  # the host starts a fresh sandbox for the next job
            return


if __name__ == "__main__":
    main()
