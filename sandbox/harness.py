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
running under the same uid can then neither ptrace the judge nor open its /proc files.

Wire format, both directions: 4-byte big-endian length, then a marshal payload.
"""
import builtins
import gc
import marshal
import os
import resource
import select
import sys
import time

PR_SET_DUMPABLE = 4
SIGKILL = 9
MAX_FRAME = 64 << 20
IPC_RMID = 0
# Exact types allowed to cross from the program to the judge (subclasses never do).
PLAIN_TYPES = frozenset({int, float, complex, str, bytes, bool, type(None), tuple, list, dict,
                         set, frozenset})
PROGRAM_FDS = (3, 4)  # the program's ends of the call pipes: requests in, replies out


class Deadline(BaseException):
    """The job's time is up (BaseException, so tests' `except Exception` cannot swallow it)."""


class ProgramGone(Exception):
    """The program process exited or broke the call protocol."""


class RemoteError(Exception):
    """The program raised an exception whose type is not a built-in one."""


# --------------------------------------------------------------- framing ----
def read_exact(fd, size, deadline=None):
    chunks, left = [], size
    while left:
        if deadline is not None:
            wait = deadline - time.monotonic()
            if wait <= 0 or not select.select([fd], [], [], wait)[0]:
                raise Deadline()
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            raise EOFError("pipe closed")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def read_frame(fd, deadline=None):
    size = int.from_bytes(read_exact(fd, 4, deadline), "big")
    if size > MAX_FRAME:
        raise ProgramGone(f"frame of {size} bytes exceeds the {MAX_FRAME}-byte limit")
    return marshal.loads(read_exact(fd, size, deadline))


def write_frame(fd, obj):
    data = marshal.dumps(obj)
    view = memoryview(len(data).to_bytes(4, "big") + data)
    while view:
        view = view[os.write(fd, view):]


def check_plain(value, depth=0):
    """Raise unless `value` is built from exact built-in types (no code objects, no subclasses)."""
    if type(value) not in PLAIN_TYPES or depth > 100:
        raise ProgramGone(f"the program sent a {type(value).__name__}, not plain data")
    if type(value) in (tuple, list, set, frozenset):
        for item in value:
            check_plain(item, depth + 1)
    elif type(value) is dict:
        for key, item in value.items():
            check_plain(key, depth + 1)
            check_plain(item, depth + 1)


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
        sys.argv = ["program"]
        namespace = {"__name__": "__sandbox__", "__builtins__": builtins}
        try:
            exec(compile(job["program"], "<program>", "exec"), namespace)
        except BaseException as exc:  # SystemExit too: the program refused to load
            write_frame(4, {"load_error": f"{type(exc).__name__}: {exc}"[:2000]})
            raise SystemExit(0)
        callables = sorted(k for k,
                           v in namespace.items() if callable(v) and not k.startswith("__"))
        write_frame(4, {"names": callables})
        serve_calls(namespace)
    finally:
        os._exit(0)


def serve_calls(namespace):
    while True:
        name, args, kwargs = read_frame(3)
        try:
            reply = {"value": marshal.dumps(namespace[name](*args, **kwargs))}
        except BaseException as exc:
            reply = {"raised": type(exc).__name__, "message": str(exc)[:2000]}
        sys.stdout.flush()
        sys.stderr.flush()
        write_frame(4, reply)


# ----------------------------------------------------------------- judge ----
class Program:
    """The judge's handle on the program process."""

    def __init__(self, requests_fd, replies_fd, deadline):
        self.requests_fd, self.replies_fd, self.deadline = requests_fd, replies_fd, deadline

    def receive(self):
        try:
            return read_frame(self.replies_fd, self.deadline)
        except (EOFError, OSError, ValueError, TypeError) as exc:
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
                value = marshal.loads(reply["value"])
            except (EOFError, ValueError, TypeError):
                raise ProgramGone("malformed reply") from None
            check_plain(value)
            return value
        if "raised" in reply:
            kind = getattr(builtins, str(reply["raised"]), None)
            if not (isinstance(kind, type) and issubclass(kind, Exception)):
                kind = RemoteError
            raise kind(str(reply.get("message", "")))
        raise ProgramGone(f"the program could not answer: {str(reply.get('error'))[:200]}")

    def proxy(self, name):
        def call_in_sandbox(*args, **kwargs):
            return self.call(name, args, kwargs)

        call_in_sandbox.__name__ = call_in_sandbox.__qualname__ = name
        return call_in_sandbox


class Units:
    """Pass/fail of each assert of the tests (rewritten into `__unit__(index, ok)` calls)."""

    def __init__(self, total):
        self.total, self.passed, self.failed = total, set(), set()

    def record(self, index, ok):
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
        for name in names if spec["expose"] is None else spec["expose"]:
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


def hello_names(hello):
    """The program's first message: its callable names, or why it failed to load."""
    check_plain(hello)
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
    try:
        with open(path, "rb") as fh:
            data = fh.read(limit + 1)
            size = os.fstat(fh.fileno()).st_size
    except OSError:
        return "", 0
    return data[:limit].decode("utf-8", "replace"), size


# ---------------------------------------------------------------- zygote ----
def make_non_dumpable():
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_DUMPABLE, 0) failed")
    return libc


def kill_everything_else():
    """SIGKILL every process this uid may signal in the sandbox but this one and pid 1, until
    none is left."""
    for _ in range(10000):
        try:
            os.kill(-1, SIGKILL)
        except ProcessLookupError:
            break
        try:
            while os.waitpid(-1, os.WNOHANG)[0]:
                pass
        except ChildProcessError:
            pass
    try:
        while True:
            os.waitpid(-1, 0)
    except ChildProcessError:
        pass


def remove_tree(path, keep_top=True):
    """Delete everything under `path`, restoring permissions the program may have removed."""
    try:
        entries = os.listdir(path)
    except OSError:
        return
    for name in entries:
        child = os.path.join(path, name)
        try:
            if os.path.isdir(child) and not os.path.islink(child):
                os.chmod(child, 0o700)
                remove_tree(child, keep_top=False)
            else:
                os.unlink(child)
        except OSError:
            pass
    if not keep_top:
        try:
            os.rmdir(path)
        except OSError:
            pass


def remove_ipc_objects(libc):
    """System V shared memory, semaphores and message queues outlive their creator: drop them."""
    for kind, remove in (("shm", libc.shmctl), ("sem", libc.semctl), ("msg", libc.msgctl)):
        try:
            with open("/proc/sysvipc/" + kind) as fh:
                rows = fh.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            ident = int(row.split()[1])
            if kind == "sem":
                remove(ident, 0, IPC_RMID)
            else:
                remove(ident, IPC_RMID, None)


def clean_up(isolated, libc, scratch_dirs):
    if isolated:  # inside our own pid namespace: everything but us belongs to the finished job
        kill_everything_else()
        remove_ipc_objects(libc)
    for path in scratch_dirs:
        remove_tree(path)


def main():
    libc = make_non_dumpable()
    channel_in, channel_out = int(sys.argv[1]), int(sys.argv[2])
    os.dup2(channel_in, 0)  # the host channel: jobs in on 0, verdicts out on 1
    os.dup2(channel_out, 1)
    os.closerange(3, 1 << 16)
    config = read_frame(0)
    gc.freeze()  # forks share the zygote's objects; keep the collector from touching (copying) them
    while True:
        try:
            job = read_frame(0)
        except EOFError:
            return
        os.makedirs(job["workdir"], mode=0o700, exist_ok=True)
        pid = os.fork()
        if pid == 0:
            judge_main(job)
        _, status = os.waitpid(pid, 0)
        if status != 0:  # the judge died without a verdict (killed by the program?): say so
            write_frame(
                1, {"status": "error", "error": "the judge process was killed", "secret": None}
            )
        clean_up(config["isolated"], libc, config["scratch_dirs"])
        write_frame(1, {"ready": True})


if __name__ == "__main__":
    main()
