"""Between two jobs in one sandbox (standard library only; shipped next to harness.py): the
zygote wipes every trace of the finished job, then checks that nothing is left. A job that
left anything behind (a file the wipe could not remove, a process, an IPC object, a changed
limit or priority of pid 1) ends the sandbox, and the host starts a fresh one: nothing of a
job reaches the next.
"""
import os
import resource

IPC_RMID = 0
LIMITS = [getattr(resource, n) for n in dir(resource) if n.startswith("RLIMIT_")]


def kill_everything_else():
    """SIGKILL every process this uid may signal in the sandbox but this one and pid 1, until
    none is left."""
    for _ in range(10000):
        try:
            os.kill(-1, 9)
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
    """Delete everything under `path`, restoring permissions the program may have removed.
    Best effort: what it cannot remove (a chain deeper than the path limit) is found by
    `leftovers`."""
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
        except (OSError, RecursionError):
            pass
    if not keep_top:
        try:
            os.rmdir(path)
        except OSError:
            pass


def _ipc_rows(kind):
    try:
        with open("/proc/sysvipc/" + kind) as fh:
            return fh.read().splitlines()[1:]
    except OSError:
        return []


def remove_ipc_objects(libc):
    """System V shared memory, semaphores and message queues outlive their creator: drop them."""
    for kind, remove in (("shm", libc.shmctl), ("sem", libc.semctl), ("msg", libc.msgctl)):
        for row in _ipc_rows(kind):
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


def own_state():
    """This process's (pid 1's) limits, priority and scheduling, which no job may change."""
    return {"limits": [resource.getrlimit(r) for r in LIMITS],
            "nice": os.getpriority(os.PRIO_PROCESS, 0), "cpus": os.sched_getaffinity(0),
            "scheduler": os.sched_getscheduler(0)}


def leftovers(isolated, scratch_dirs, baseline):
    """What the finished job left behind ([] when nothing)."""
    left = [f"{path}/{name}" for path in scratch_dirs for name in _listdir(path)]
    if isolated:
        left += [f"process {p}" for p in os.listdir("/proc") if p.isdigit() and p != "1"]
        left += [f"System V {k} object" for k in ("shm", "sem", "msg") if _ipc_rows(k)]
    if own_state() != baseline:
        left.append("pid 1's limits, priority or scheduling changed")
    return left[:10]


def _listdir(path):
    try:
        return os.listdir(path)
    except OSError:
        return []
