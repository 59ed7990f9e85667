"""Command lines and process settings that start the in-sandbox harness (bubblewrap or not)."""
from __future__ import annotations

import fcntl
import os
import shutil
import stat
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

HARNESS = Path(__file__).with_name("harness.py")
# the harness and the modules it imports, each a read-only file in /sandbox inside
HARNESS_FILES = tuple(Path(__file__).with_name(n) for n in (
    "harness.py", "harness_wire.py", "harness_seccomp.py", "harness_cleanup.py"))
HARNESS_IN_SANDBOX = "/sandbox/harness.py"
SYSTEM_DIRS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
FALLBACK_PYTHON = "/usr/bin/python3"
JUDGE_MIN_MEMORY_MB = 1024


class SandboxUnavailable(RuntimeError):
    """The requested sandbox backend cannot run on this machine; the message says what to do."""


@dataclass
class SandboxSettings:
    """Limits and backend of the sandbox (also the `sandbox:` section of the trainer's config).
    Every limit applies to each job separately."""

    backend: str = "bwrap"  # bwrap (isolated) | unsafe_local (NO isolation; trusted code only)
    workers: int = 2  # jobs run at once, each in its own sandbox under its own uid
    timeout_s: float = 5.0  # wall clock per job: load + all tests; the whole process tree is killed
    memory_mb: int = 512  # address space of the program process
    max_processes: int = 16  # processes and threads the program may have at once
    # stdout+stderr kept in the result (the rest is counted, then dropped)
    max_output_bytes: int = 4096
    max_file_mb: int = 16  # largest file the program may write
    max_open_files: int = 64
    tmp_size_mb: int = 64  # size of each writable place, /tmp and /dev/shm (memory-backed)
    # sandbox restarted (fresh namespaces) after this many jobs; 1 = every job
    jobs_per_sandbox: int = 100
    uid_base: int = 61000  # when started as root, each worker leases its own uid from uid_base up
    # interpreter inside the sandbox; auto: this one if the sandbox uid can reach it
    python: str = "auto"

    def problems(self):
        if self.backend not in ("bwrap", "unsafe_local"):
            yield f"backend: must be 'bwrap' or 'unsafe_local', got {self.backend!r}"
        for name in ("workers", "timeout_s", "memory_mb", "max_processes", "max_output_bytes",
                     "max_file_mb", "max_open_files", "tmp_size_mb", "jobs_per_sandbox"):
            if not getattr(self, name) > 0:
                yield f"{name}: must be > 0, got {getattr(self, name)!r}"
        if not 1000 <= self.uid_base <= 2**31 - 1000:
            yield f"uid_base: must be between 1000 and 2^31-1000, got {self.uid_base!r}"


@dataclass
class Launch:
    argv: list[str]
    user: Optional[int]  # switch to this uid (and gid) before starting, when root
    scratch_dirs: list[str]  # wiped after every job
    workdir: str  # the job's working directory (fresh and empty for every job)
    isolated: bool


def _reachable_by_others(path: str) -> bool:
    """Can a uid that owns nothing here open `path`? (every directory searchable by others)."""
    parts = Path(os.path.realpath(path)).parts
    for i in range(2, len(parts) + 1):
        mode = os.stat(os.path.join(*parts[:i])).st_mode
        needed = stat.S_IXOTH if stat.S_ISDIR(mode) else stat.S_IROTH
        if not mode & needed:
            return False
    return True


def choose_python(settings: SandboxSettings, switching_uid: bool) -> str:
    if settings.python != "auto":
        if not os.access(settings.python, os.X_OK):
            raise SandboxUnavailable(f"sandbox.python: {settings.python!r} "
                                     "is not an executable file")
        return os.path.realpath(settings.python)
    own = os.path.realpath(getattr(sys, "_base_executable", sys.executable))
    if not switching_uid or (_reachable_by_others(own) and _reachable_by_others(sys.base_prefix)):
        return own
    if os.access(FALLBACK_PYTHON, os.X_OK) and _reachable_by_others(FALLBACK_PYTHON):
        return os.path.realpath(FALLBACK_PYTHON)
    raise SandboxUnavailable(
        "the sandbox uid cannot reach this interpreter "
        f"({own}: a parent directory is not searchable by "
        f"other users) and {FALLBACK_PYTHON} does not exist; install python3 or set sandbox.python"
    )


def _system_mounts(python: str) -> list[str]:
    args = ["--ro-bind", "/usr", "/usr"]
    for path in SYSTEM_DIRS:
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    prefix = os.path.dirname(os.path.dirname(python))  # .../bin/python3.x -> ...
    if not python.startswith("/usr/local/"):  # host-installed tools are not the program's
        args += ["--tmpfs", "/usr/local", "--remount-ro", "/usr/local"]
    if not prefix.startswith("/usr"):
        args += ["--ro-bind", prefix, prefix]
    return args


class UidLease:
    """An unprivileged uid held by one worker for its lifetime: a lock file per uid makes it
    unique across every pool and process on the machine, so concurrent sandboxes never share
    a uid (RLIMIT_NPROC counts per uid)."""

    DIRECTORY = os.path.join(tempfile.gettempdir(), "hybrid-rl-sandbox-uids")
    SPAN = 10000

    def __init__(self, uid_base: int):
        os.makedirs(self.DIRECTORY, mode=0o700, exist_ok=True)
        for uid in range(uid_base, uid_base + self.SPAN):
            fd = os.open(os.path.join(self.DIRECTORY, str(uid)), os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            self.uid, self._fd = uid, fd
            return
        raise SandboxUnavailable(f"no free sandbox uid in [{uid_base}, {uid_base + self.SPAN})")

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the lock
            self._fd = None


def bwrap_launch(
    settings: SandboxSettings, uid: Optional[int], harness_fds: list[int], channel: tuple[int, int]
) -> Launch:
    """`uid`: the worker's leased uid when started as root (None: run as ourselves);
    `harness_fds`: memory files holding HARNESS_FILES, in order. The only writable places are
    /tmp and /dev/shm, each a tmpfs of tmp_size_mb wiped after every job; /dev and /usr/local
    are read-only."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        raise SandboxUnavailable(
            "bubblewrap (bwrap) is not installed, so "
            "model-written code cannot be isolated. Install it "
            "(Debian/Ubuntu: apt-get install bubblewrap; "
            "scripts/setup.sh does this when run as root), or "
            "set sandbox.backend=unsafe_local to run the "
            "code WITHOUT isolation (trusted code only)."
        )
    root = uid is not None
    uid = uid if root else os.getuid()
    python = choose_python(settings, switching_uid=root)
    argv = [
        bwrap, "--unshare-user", "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts",
        "--unshare-cgroup-try", "--disable-userns", "--die-with-parent", "--new-session",
        "--as-pid-1", "--uid", str(uid), "--gid", str(uid), "--cap-drop", "ALL", "--hostname",
        "sandbox", *_system_mounts(python), "--proc", "/proc", "--dev", "/dev", "--perms", "1777",
        "--size", str(settings.tmp_size_mb << 20), "--tmpfs", "/dev/shm", "--remount-ro", "/dev",
        "--size", str(settings.tmp_size_mb << 20), "--tmpfs", "/tmp",
        *[arg for fd, path in zip(harness_fds, HARNESS_FILES)
          for arg in ("--perms", "0444", "--ro-bind-data", str(fd), f"/sandbox/{path.name}")],
        "--remount-ro", "/", "--chdir", "/tmp", "--clearenv",
        "--setenv", "PATH", "/usr/bin:/bin", python, "-I", "-S", HARNESS_IN_SANDBOX,
        *map(str, channel),
    ]
    return Launch(argv, uid if root else None, ["/tmp", "/dev/shm"], "/tmp/job", isolated=True)


def unsafe_launch(python: str, workdir: str, channel: tuple[int, int]) -> Launch:
    """No namespaces, no uid switch: rlimits and a process group only. Trusted code only."""
    return Launch(
        [python, "-I", "-S", str(HARNESS), *map(str, channel)],
        None,
        [workdir],
        workdir,
        isolated=False,
    )


def process_limits(settings: SandboxSettings, user: Optional[int]) -> dict:
    """rlimits of the program process. RLIMIT_NPROC counts every process of the uid: with a
    uid of our own (root start) that is just this job; otherwise the user's other processes
    are counted in, so the limit is set above their current number."""
    processes = settings.max_processes + 2  # + the harness and the judge
    if user is None:
        processes += _processes_of(os.getuid())
    return {
        "cpu_s": int(settings.timeout_s) + 1,
        "memory_bytes": settings.memory_mb << 20, "processes": processes,
        "file_bytes": settings.max_file_mb << 20, "open_files": settings.max_open_files,
        # the judge: the trusted tests and whatever the program's replies decode to
        "judge_memory_bytes": max(2 * settings.memory_mb, JUDGE_MIN_MEMORY_MB) << 20,
    }


def _processes_of(uid: int) -> int:
    count = 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                count += os.stat(f"/proc/{entry}").st_uid == uid
            except OSError:
                pass
    return count
