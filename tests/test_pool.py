"""The verifier worker pool: results in order; hangs, crashes and exceptions cost one item."""
import os
import threading
import time

from verifiers.pool import WorkerPool


def square(x):
    return x * x


def hang(_):
    while True:
        pass


def crash(_):
    os._exit(3)  # dies without a word, like a segfault in a C extension


def boom(x):
    raise ValueError(f"bad {x}")


FUNCS = [square, hang, crash, boom]


def test_results_come_back_in_order():
    with WorkerPool(FUNCS, num_workers=2, timeout_s=5) as pool:
        assert [o.value for o in pool.run([(0, (i,)) for i in range(20)])] == [
            i * i for i in range(20)
        ]


def test_hang_is_killed_at_the_timeout_and_the_pool_goes_on():
    with WorkerPool(FUNCS, num_workers=2, timeout_s=0.5) as pool:
        start = time.monotonic()
        out = pool.run([(0, (2,)), (1, (None,)), (0, (3,)), (1, (None,)), (0, (4,))])
        elapsed = time.monotonic() - start
        assert [o.value for o in out] == [4, None, 9, None, 16]
        assert "timed out after 0.5 s" in out[1].error and pool.replaced == 2
        assert elapsed < 3.0  # two hangs ran side by side, each bounded
        assert pool.run([(0, (5,))])[0].value == 25  # replaced workers serve new items


def test_crash_and_exception_are_reported_per_item():
    with WorkerPool(FUNCS, num_workers=1, timeout_s=5) as pool:
        out = pool.run([(2, (None,)), (3, ("x",)), (0, (6,))])
        assert "worker crashed (exit code 3)" in out[0].error
        assert out[1].error.startswith("ValueError: bad x") and out[2].value == 36


def test_bounded_from_a_thread():
    results = []

    def in_thread():
        with WorkerPool(FUNCS, num_workers=1, timeout_s=0.3) as pool:
            results.extend(pool.run([(1, (None,)), (0, (7,))]))

    t = threading.Thread(target=in_thread)
    t.start()
    t.join(timeout=10)
    assert not t.is_alive() and results[0].error and results[1].value == 49


def test_workers_die_with_a_killed_parent():
    from helpers.runs import children_of_a_killed_parent, processes_gone

    workers = children_of_a_killed_parent(
        "from verifiers.pool import WorkerPool\npool = WorkerPool([abs], num_workers=3)",
        "(w.process.pid for w in pool._workers)",
    )
    assert len(workers) == 3 and processes_gone(workers) == []


def test_a_worker_that_died_while_idle_is_replaced_before_use():
    pool = WorkerPool([abs], num_workers=1, timeout_s=2)
    try:
        pool._workers[0].process.kill()
        pool._workers[0].process.join()
        assert [o.value for o in pool.run([(0, (-3,)), (0, (4,))])] == [3, 4]
        assert pool.replaced == 1
    finally:
        pool.close()


def nap(seconds):
    time.sleep(seconds)
    return seconds


def test_start_returns_at_once_and_the_work_overlaps_the_callers():
    with WorkerPool([nap], num_workers=2, timeout_s=5) as pool:
        pool.run([(0, (0.0,)), (0, (0.0,))])  # workers up
        begun = time.monotonic()
        job = pool.start([(0, (0.4,)), (0, (0.4,))])
        assert time.monotonic() - begun < 0.2  # handed out, not waited for
        time.sleep(0.4)  # the caller's own work while the workers nap
        assert [o.value for o in pool.finish(job)] == [0.4, 0.4]
        assert time.monotonic() - begun < 0.7  # 0.4 s, not 0.8: the two overlapped
        try:
            pool.start([(0, (0.0,))])
            pool.start([(0, (0.0,))])  # a second job before the first is finished
        except RuntimeError as exc:
            assert "finish it first" in str(exc)
        else:
            raise AssertionError("a second start while busy must raise")


def test_a_time_limit_counts_from_dispatch_even_while_the_caller_is_busy():
    with WorkerPool(FUNCS + [nap], num_workers=2, timeout_s=0.5) as pool:
        job = pool.start([(1, (None,)), (4, (0.1,))])  # a hang, and a quick call
        time.sleep(1.0)  # the caller is busy past the limit
        out = pool.finish(job)
        assert "timed out after 0.5 s" in out[0].error  # the hang is killed
        assert out[1].value == 0.1  # the call that returned in time keeps its result


def test_a_worker_ends_on_sigterm_even_when_the_trainer_ignores_it():
    """submitit's job handler ignores SIGTERM, and a forked worker inherits it: multiprocessing's
    exit-time terminate() must still end the worker, or the job waits for it forever."""
    import signal

    from verifiers.pool import WorkerPool

    saved = signal.signal(signal.SIGTERM, lambda *_: None)  # what submitit installs
    try:
        pool = WorkerPool([len], num_workers=1)
    finally:
        signal.signal(signal.SIGTERM, saved)
    assert pool.run([(0, ("abc",))])[0].value == 3  # the worker is in its loop
    worker = pool._workers[0].process
    worker.terminate()
    worker.join(timeout=5)
    assert not worker.is_alive() and worker.exitcode == -signal.SIGTERM
