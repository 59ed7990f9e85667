"""Hostile programs against the bubblewrap sandbox: one property per test. Each program
prints what it managed to see or do; the tests check the host side and that output."""
import os
import socket
import threading
import time

from sandbox import Job

from .conftest import ADD_OK, HOST_SECRET

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def hostile(body: str) -> str:
    """A program that runs `body` at load time (errors printed) and then defines a correct add."""
    indented = "\n".join("    " + line for line in body.strip().splitlines())
    return (f"try:\n{indented}\nexcept BaseException as exc:\n    print('BLOCKED', "
            f"type(exc).__name__, exc)\n{ADD_OK}")


# ----------------------------------------------------------------- limits ----
def test_infinite_loop_is_stopped_at_the_time_limit(run):
    start = time.monotonic()
    result = run("def add(a, b):\n    while True:\n        pass\n")
    assert result.status == "timeout"
    assert time.monotonic() - start < 3.0 + 2.0


def test_infinite_loop_at_load_time_is_stopped(run):
    assert run("while True:\n    pass\n" + ADD_OK).status == "timeout"


def test_memory_bomb_hits_the_address_space_limit(run):
    result = run(hostile("x = bytearray(8 * 1024**3)\nprint('ALLOCATED')"))
    assert "BLOCKED MemoryError" in result.output and "ALLOCATED" not in result.output


def test_fork_bomb_is_bounded_by_the_process_limit(run):
    result = run(
        hostile("""
import os, time
n = 0
while n < 1000:
    if os.fork() == 0:
        time.sleep(60)
        os._exit(0)
    n += 1
""")
    )
    assert "BLOCKED BlockingIOError" in result.output  # EAGAIN from fork: the limit held
    assert result.duration_s < 3.0


def test_thread_bomb_is_bounded_by_the_process_limit(run):
    result = run(
        hostile("""
import threading, time
for _ in range(1000):
    threading.Thread(target=time.sleep, args=(60,), daemon=True).start()
""")
    )
    assert "BLOCKED RuntimeError can't start new thread" in result.output


def test_huge_output_is_capped(run):
    result = run("import sys\nfor _ in range(200):\n    sys.stdout.write('x' * 100_000)\n" + ADD_OK)
    assert len(result.output) <= 1000
    assert result.output_bytes > 1000  # it was counted, then dropped


def test_busy_child_process_is_stopped_with_its_job(single_pool):
    busy = "import subprocess\nsubprocess.run(['python3', '-c', 'while True: pass'])\n" + ADD_OK
    start = time.monotonic()
    assert single_pool.run(Job(busy, "assert add(1, 1) == 2\n")).status == "timeout"
    assert time.monotonic() - start < 3.0 + 2.0
    count = (
        "import os\nprint('PIDS', len([p for p in os.listdir('/proc') if p.isdigit()]))\n" + ADD_OK
    )
    # the busy child is gone
    assert "PIDS 3" in single_pool.run(Job(count, "assert add(1, 1) == 2\n")).output


# --------------------------------------------------------- reading the host ----
def test_host_files_are_not_visible(run, tmp_path):
    canary = tmp_path / "canary.txt"
    canary.write_text("CANARY-CONTENT")
    checkpoint = os.path.join(ROOT, "outputs")
    paths = [
        str(canary),
        os.path.expanduser("~/.bashrc"),
        os.path.join(ROOT, "README.md"),
        checkpoint,
        "/etc/passwd",
        "/etc/shadow",
        "/root",
        "/home",
        os.path.join(ROOT, ".git", "config"),
    ]
    result = run(
        hostile(f"""
import os
for p in {paths!r}:
    try:
        print('LEAKED', p, os.listdir(p) if os.path.isdir(p) else open(p).read()[:50])
    except OSError as exc:
        print('DENIED', p, type(exc).__name__)
release = '/usr/lib/os-release'
print('CONTROL', open(release).read()[:5] if os.path.exists(release) else 'none')
""")
    )
    assert "LEAKED" not in result.output and "CANARY" not in result.output
    assert result.output.count("DENIED") == len(paths)
    assert "CONTROL" in result.output


def test_host_environment_is_not_visible(run):
    result = run(
        hostile("""
import os
print(dict(os.environ))
for pid in ('1', 'self', str(os.getppid())):
    try:
        print(pid, open(f'/proc/{pid}/environ', 'rb').read())
    except OSError as exc:
        print(pid, 'DENIED', type(exc).__name__)
""")
    )
    assert os.environ["HYBRID_RL_TEST_SECRET"] == HOST_SECRET  # the host has it...
    assert HOST_SECRET not in result.output  # ...the program does not
    assert "1 DENIED PermissionError" in result.output  # pid 1 is the harness, not bwrap


def test_harness_memory_and_descriptors_are_out_of_reach(run):
    result = run(
        hostile("""
import os
parent = os.getppid()
for path in ('/proc/1/mem', '/proc/1/fd/1', f'/proc/{parent}/mem', f'/proc/{parent}/fd/1'):
    try:
        open(path, 'r+b')
        print('OPENED', path)
    except OSError as exc:
        print('DENIED', path, type(exc).__name__)
""")
    )
    assert "OPENED" not in result.output and result.output.count("DENIED") == 4


def test_only_sandbox_processes_are_visible(run):
    result = run(hostile("import os\nprint('PIDS', sorted(int(p) for "
                         "p in os.listdir('/proc') if p.isdigit()))"))
    pids = eval(result.output.split("PIDS", 1)[1].strip().splitlines()[0])
    assert len(pids) <= 3 and 1 in pids  # harness, judge, program: none of the host's


def test_program_runs_as_an_unprivileged_uid_without_capabilities(run):
    result = run(
        hostile("""
import os
status = open('/proc/self/status').read()
caps = [l.split()[1] for l in status.splitlines() if l.startswith(('CapEff', 'CapPrm'))]
print('UID', os.getuid(), caps)
""")
    )
    line = result.output.split("UID", 1)[1].split()
    assert int(line[0]) != 0
    assert "['0000000000000000', '0000000000000000']" in result.output


def test_concurrent_jobs_get_distinct_uids(pool, single_pool):
    program = "import os, time\ntime.sleep(0.3)\nprint('UID', os.getuid())\n" + ADD_OK
    job = Job(program, "assert add(1, 1) == 2\n")
    # two workers here, one in another pool
    results = pool.run_batch([job] * 2) + [single_pool.run(job)]
    uids = {r.output.split("UID", 1)[1].split()[0] for r in results}
    assert len(uids) == 3


# -------------------------------------------------------- writing the host ----
def test_writes_outside_the_temporary_directory_fail(run, tmp_path):
    target = tmp_path / "written-by-program"
    paths = ["/usr/evil", "/evil", "/sandbox/harness.py", "/proc/evil", str(target),
             os.path.join(ROOT, "evil")]
    result = run(
        hostile(f"""
for p in {paths!r}:
    try:
        open(p, 'w').write('x')
        print('WROTE', p)
    except OSError as exc:
        print('DENIED', p, type(exc).__name__)
open('scratch.txt', 'w').write('ok')
print('CONTROL', open('scratch.txt').read())
""")
    )
    assert "WROTE" not in result.output and result.output.count("DENIED") == len(paths)
    assert "CONTROL ok" in result.output
    assert not target.exists() and not os.path.exists(os.path.join(ROOT, "evil"))


def test_host_files_cannot_be_deleted(run, tmp_path):
    canary = tmp_path / "keep.txt"
    canary.write_text("keep")
    run(
        hostile(f"""
import os, shutil
for p in ({str(canary)!r}, {os.path.join(ROOT, "README.md")!r}):
    try:
        os.remove(p)
    except OSError as exc:
        print('DENIED', type(exc).__name__)
shutil.rmtree({ROOT!r}, ignore_errors=True)
shutil.rmtree('/usr', ignore_errors=True)
""")
    )
    assert canary.read_text() == "keep"
    assert os.path.exists(os.path.join(ROOT, "README.md"))


def test_symlinks_do_not_escape(run, tmp_path):
    canary = tmp_path / "canary.txt"
    canary.write_text("CANARY-CONTENT")
    result = run(
        hostile(f"""
import os
os.symlink({str(canary)!r}, 'link1')
os.symlink('/', 'link2')
inside = {str(canary)!r}.lstrip('/')
for p in ('link1', 'link2/' + inside, '/proc/1/root/' + inside, '/proc/self/root/' + inside,
          '/proc/1/cwd/../..' + {str(canary)!r}):
    try:
        print('LEAKED', open(p).read())
    except OSError as exc:
        print('DENIED', type(exc).__name__)
""")
    )
    assert "CANARY" not in result.output and result.output.count("DENIED") == 5


# ---------------------------------------------------------------- network ----
def test_tcp_to_the_host_is_unreachable(run):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    accepted = []
    threading.Thread(target=lambda: accepted.append(server.accept()), daemon=True).start()
    # control: the host can connect
    socket.create_connection(("127.0.0.1", port), timeout=2).close()
    time.sleep(0.1)
    result = run(
        hostile(f"""
import socket
for host in ('127.0.0.1', '1.1.1.1'):
    try:
        socket.create_connection((host, {port}), timeout=1)
        print('CONNECTED', host)
    except OSError as exc:
        print('DENIED', host, type(exc).__name__)
""")
    )
    server.close()
    assert len(accepted) == 1  # only the control connection arrived
    assert "CONNECTED" not in result.output and result.output.count("DENIED") == 2


def test_dns_does_not_resolve(run):
    result = run(hostile("import socket\nprint('RESOLVED', socket.getaddrinfo('example.com', 80))"))
    assert "RESOLVED" not in result.output and "BLOCKED gaierror" in result.output


def test_unix_sockets_of_the_host_are_unreachable(run, tmp_path):
    path = str(tmp_path / "host.sock")
    # abstract names are machine-wide: one per test process, so two suites can run at once
    abstract = f"\0hybrid-rl-test-abstract-{os.getpid()}"
    servers = []
    for address in (path, abstract):
        server = socket.socket(socket.AF_UNIX)
        server.bind(address)
        server.listen()
        servers.append(server)
    result = run(
        hostile(f"""
import socket
for address in ({path!r}, {abstract!r}, '/run/docker.sock',
                '/var/run/dbus/system_bus_socket'):
    s = socket.socket(socket.AF_UNIX)
    try:
        s.connect(address)
        print('CONNECTED', repr(address))
    except OSError as exc:
        print('DENIED', type(exc).__name__)
""")
    )
    for server in servers:
        server.close()
    assert "CONNECTED" not in result.output and result.output.count("DENIED") == 4


# -------------------------------------- the usual ways out of a Python guard ----
def _escape_attempt(run, tmp_path, how: str):
    """Run `how` (code that should create `target` on the host); the host must stay clean, and
    the program must still have loaded and been judged (a program that never ran proves
    nothing)."""
    target = tmp_path / "escaped"
    result = run(hostile(how.format(target=str(target))))
    assert result.status == "pass", (result.status, result.error)
    assert not target.exists()


def test_os_system_stays_inside(run, tmp_path):
    _escape_attempt(run, tmp_path, "import os\nprint('RC', os.system('touch {target}'))")


def test_subprocess_stays_inside(run, tmp_path):
    _escape_attempt(run, tmp_path, "import subprocess\nsubprocess.run(['sh', "
                                   "'-c', 'echo x > {target}'])")


def test_posix_spawn_stays_inside(run, tmp_path):
    _escape_attempt(run, tmp_path, "import os\nos.waitpid(os.posix_spawn('/usr/bin/touch', "
                                   "['touch', '{target}'], {{}}), 0)")


def test_ctypes_stays_inside(run, tmp_path):
    _escape_attempt(run, tmp_path, """
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
fd = libc.open(b'{target}', os.O_WRONLY | os.O_CREAT, 0o644)
print('FD', fd, 'PTRACE', libc.ptrace(16, os.getppid(), 0, 0), ctypes.get_errno())
""")


def test_reloaded_os_and_shutil_stay_inside(run, tmp_path):
    _escape_attempt(run, tmp_path, """
import importlib, os, shutil
os = importlib.reload(os)
shutil.copy('/usr/bin/true', '{target}')
""")


def test_ptrace_of_the_judge_is_refused(run):
    result = run(
        hostile("""
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
print('PTRACE', libc.ptrace(16, os.getppid(), 0, 0), ctypes.get_errno())
""")
    )
    assert "PTRACE -1 1" in result.output  # EPERM


# ------------------------------------------------ nothing survives a job ----
def test_next_job_in_the_same_sandbox_starts_clean(single_pool):
    first = (
        """
import os, subprocess, time
for left in ('left.txt', '/tmp/left.txt', '/dev/shm/left'):
    open(left, 'w').write('x')
if os.fork() == 0:
    os.setsid()
    while True:
        open('/tmp/daemon.txt', 'w').write('x'); time.sleep(0.01)
import ctypes
ctypes.CDLL(None).shmget(4242, 4096, 0o1666)
"""
        + ADD_OK
    )
    second = """
import ctypes, os
print('FILES', sorted(os.listdir('.')), sorted(os.listdir('/tmp')), os.listdir('/dev/shm'))
print('SHM', ctypes.CDLL(None).shmget(4242, 0, 0))
print('PIDS', len([p for p in os.listdir('/proc') if p.isdigit()]))
""" + ADD_OK
    assert single_pool.run(Job(first, "assert add(1, 1) == 2\n")).passed
    time.sleep(0.1)
    out = single_pool.run(Job(second, "assert add(1, 1) == 2\n")).output
    assert "FILES ['.output'] ['job'] []" in out
    assert "SHM -1" in out  # the System V segment is gone
    assert "PIDS 3" in out  # harness, judge, this program: the daemon was killed
