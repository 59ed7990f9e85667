"""The program process's syscall filter (seccomp, standard library only; shipped next to
harness.py). Installed in the program process just before the model's code runs, so the
harness itself (pid 1) and the judge are not filtered.

Refused with EPERM, for the program and everything it starts:
- kernel surfaces the threat model does not need: the keyring (`keyctl`, `add_key`,
  `request_key`), `ptrace`, `process_vm_readv`/`writev`, `kcmp`, `unshare`, `setns`, `mount`,
  `umount2`, `pivot_root`, `bpf`, `perf_event_open`, `userfaultfd`, `io_uring_*`, module and
  kexec loading, and POSIX message queues (`mq_*`, which outlive a job);
- reaching the sandbox's pid 1 or the judge: signals (`kill`, `tkill`, `tgkill`,
  `rt_sigqueueinfo`, `rt_tgsigqueueinfo`, `pidfd_open`) to pid 1, the judge, or every process
  (-1) or a process group other than the program's own; changing another process's limits,
  priority, scheduling, CPU affinity, I/O priority or memory placement (`prlimit64`,
  `setpriority`, `sched_set*`, `ioprio_set`, `migrate_pages`, `move_pages` on anything but
  the caller).
A syscall of another architecture (x32 or 32-bit on x86-64) kills the process.
"""
import ctypes
import platform
import struct

# (audit arch, x32 bit, syscall numbers) for the machines we support
ARCH = {
    "x86_64": (0xC000003E, 0x40000000, {
        "keyctl": 250, "add_key": 248, "request_key": 249, "ptrace": 101,
        "process_vm_readv": 310, "process_vm_writev": 311, "kcmp": 312, "unshare": 272,
        "setns": 308, "mount": 165, "umount2": 166, "pivot_root": 155, "bpf": 321,
        "perf_event_open": 298, "userfaultfd": 323, "io_uring_setup": 425,
        "io_uring_enter": 426, "io_uring_register": 427, "init_module": 175,
        "finit_module": 313, "delete_module": 176, "kexec_load": 246, "kexec_file_load": 320,
        "mq_open": 240, "mq_unlink": 241, "mq_timedsend": 242, "mq_timedreceive": 243,
        "mq_notify": 244, "mq_getsetattr": 245, "open_by_handle_at": 304,
        # checked per call: the target process is the first argument
        "kill": 62, "tkill": 200, "tgkill": 234, "rt_sigqueueinfo": 129,
        "rt_tgsigqueueinfo": 297, "pidfd_open": 434, "prlimit64": 302, "setpriority": 141,
        "sched_setparam": 142, "sched_setscheduler": 144, "sched_setaffinity": 203,
        "sched_setattr": 314, "ioprio_set": 251, "migrate_pages": 256, "move_pages": 279,
    }),
    "aarch64": (0xC00000B7, None, {
        "keyctl": 219, "add_key": 217, "request_key": 218, "ptrace": 117,
        "process_vm_readv": 270, "process_vm_writev": 271, "kcmp": 272, "unshare": 97,
        "setns": 268, "mount": 40, "umount2": 39, "pivot_root": 41, "bpf": 280,
        "perf_event_open": 241, "userfaultfd": 282, "io_uring_setup": 425,
        "io_uring_enter": 426, "io_uring_register": 427, "init_module": 105,
        "finit_module": 273, "delete_module": 106, "kexec_load": 104, "kexec_file_load": 294,
        "mq_open": 180, "mq_unlink": 181, "mq_timedsend": 182, "mq_timedreceive": 183,
        "mq_notify": 184, "mq_getsetattr": 185, "open_by_handle_at": 265,
        "kill": 129, "tkill": 130, "tgkill": 131, "rt_sigqueueinfo": 138,
        "rt_tgsigqueueinfo": 240, "pidfd_open": 434, "prlimit64": 261, "setpriority": 140,
        "sched_setparam": 118, "sched_setscheduler": 119, "sched_setaffinity": 122,
        "sched_setattr": 274, "ioprio_set": 30, "migrate_pages": 238, "move_pages": 239,
    }),
}
SIGNALLING = ("kill", "tkill", "tgkill", "rt_sigqueueinfo", "rt_tgsigqueueinfo", "pidfd_open")
# syscall -> the argument naming the process, which must be 0 (the caller)
SELF_ONLY = {"prlimit64": 0, "setpriority": 1, "sched_setparam": 0, "sched_setscheduler": 0,
             "sched_setaffinity": 0, "sched_setattr": 0, "ioprio_set": 1, "migrate_pages": 0,
             "move_pages": 0}
LD_W_ABS, JEQ_K, JGT_K, RET_K = 0x20, 0x15, 0x25, 0x06
ALLOW, KILL, EPERM = 0x7FFF0000, 0x80000000, 0x00050000 | 1
PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 38, 22, 2


def supported() -> bool:
    return platform.machine() in ARCH


def _arg(index):  # the low 32 bits of a syscall argument (little-endian seccomp_data)
    return (LD_W_ABS, 0, 0, 16 + 8 * index)


def _process_check(nr, arg, allowed_group, judge):
    """Allow the call only when argument `arg` is 0 (the caller or its own group), the
    program's own group (negative), or a process above 1 that is not the judge."""
    return [
        (JEQ_K, 0, 9, nr), _arg(arg),
        (JEQ_K, 6, 0, 0),  # 0: the caller itself
        (JEQ_K, 5, 0, allowed_group & 0xFFFFFFFF),  # -pgid of the program's own group
        (JGT_K, 3, 0, 0x7FFFFFFF),  # negative: -1 (every process) or another group
        (JEQ_K, 2, 0, 1),  # pid 1
        (JEQ_K, 1, 0, judge),
        (JGT_K, 1, 0, 1),  # another process above 1: allowed
        (RET_K, 0, 0, EPERM),
        (RET_K, 0, 0, ALLOW),
    ]


def _self_check(nr, arg):
    """Allow the call only when argument `arg` is 0 (the caller)."""
    return [(JEQ_K, 0, 4, nr), _arg(arg), (JEQ_K, 1, 0, 0), (RET_K, 0, 0, EPERM),
            (RET_K, 0, 0, ALLOW)]


def build_filter(machine, own_group, judge):
    """The BPF program as (code, jt, jf, k) instructions."""
    audit_arch, x32_bit, numbers = ARCH[machine]
    prog = [(LD_W_ABS, 0, 0, 4), (JEQ_K, 1, 0, audit_arch), (RET_K, 0, 0, KILL),
            (LD_W_ABS, 0, 0, 0)]
    if x32_bit is not None:
        prog += [(0x35, 0, 1, x32_bit), (RET_K, 0, 0, KILL)]  # JGE: an x32 syscall number
    checked = set(SIGNALLING) | set(SELF_ONLY)
    for name, nr in numbers.items():
        if name not in checked:
            prog += [(JEQ_K, 0, 1, nr), (RET_K, 0, 0, EPERM)]
    for name in SIGNALLING:
        prog += _process_check(numbers[name], 0, -own_group, judge)
        prog.append((LD_W_ABS, 0, 0, 0))  # the checks above loaded an argument: reload the nr
    for name, arg in SELF_ONLY.items():
        prog += _self_check(numbers[name], arg)
        prog.append((LD_W_ABS, 0, 0, 0))
    return prog + [(RET_K, 0, 0, ALLOW)]


def install(own_group, judge):
    """Filter this process and every process it starts from now on (irreversible)."""
    prog = build_filter(platform.machine(), own_group, judge)
    raw = b"".join(struct.pack("HBBI", *ins) for ins in prog)
    buffer = ctypes.create_string_buffer(raw, len(raw))

    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    fprog = SockFprog(len(prog), ctypes.cast(buffer, ctypes.c_void_p))
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 or libc.prctl(
            PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "installing the sandbox's syscall filter failed")
