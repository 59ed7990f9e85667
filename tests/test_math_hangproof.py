"""Pathological answers score 0 within the time bound: in the main thread, a thread and a
worker process."""
import multiprocessing as mp
import threading
import time

import pytest

from verifiers.math import verify_math

ADVERSARIAL = [
    "\\boxed{9^{9^{9^{9}}}}",
    "\\boxed{" + "(" * 10000 + "1" + ")" * 10000 + "}", "\\boxed{" + "7" * 1_000_000 + "}",
    "\\boxed{100000!}", "\\boxed{(x+1)^{99999}}", "\\boxed{" + "x+" * 5000 + "1}",
    "\\boxed{\\frac{" * 200 + "1" + "}{2}" * 200 + "}",
]
BOUND_S = 2.0 + 1.5  # the verifier's time limit plus a worker restart on a busy 2-core machine


def _check_all():
    out = []
    for completion in ADVERSARIAL:
        start = time.monotonic()
        out.append((verify_math(completion, "\\frac{x}{2}"), time.monotonic() - start))
    return out


def _assert_bounded(results):
    assert len(results) == len(ADVERSARIAL)
    for score, seconds in results:
        assert score == 0.0 and seconds < BOUND_S


@pytest.mark.slow
def test_bounded_in_the_main_thread():
    _assert_bounded(_check_all())


@pytest.mark.slow
def test_bounded_in_a_thread():
    results = []
    t = threading.Thread(target=lambda: results.extend(_check_all()))
    t.start()
    t.join(timeout=60)
    _assert_bounded(results)


def _in_process(queue):
    queue.put(_check_all())


@pytest.mark.slow
def test_bounded_in_a_worker_process():
    queue = mp.get_context("fork").Queue()
    proc = mp.get_context("fork").Process(target=_in_process, args=(queue,))
    proc.start()
    _assert_bounded(queue.get(timeout=60))
    proc.join(timeout=10)


def test_ordinary_symbolic_answers_still_match_through_the_bound():
    assert verify_math("so \\boxed{\\frac{1}{2}x}", "\\frac{x}{2}") == 1.0
    assert verify_math("\\boxed{x^2+2x+1}", "(x+1)^2") == 1.0
