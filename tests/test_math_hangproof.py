"""Pathological answers score 0 within the time bound: in the main thread, a thread and a
worker process."""
import multiprocessing as mp
import threading
import time

import pytest

from verifiers.math import verify_math
from verifiers.registry import Flagged

ADVERSARIAL = [
    "\\boxed{9^{9^{9^{9}}}}",
    "\\boxed{" + "(" * 10000 + "1" + ")" * 10000 + "}", "\\boxed{" + "7" * 1_000_000 + "}",
    "\\boxed{100000!}", "\\boxed{(x+1)^{99999}}", "\\boxed{" + "x+" * 5000 + "1}",
    "\\boxed{\\frac{" * 200 + "1" + "}{2}" * 200 + "}",
    # power towers in Python syntax, which the in-process paths once evaluated exactly
    "\\boxed{9**9**9}", "9**9**9", "The answer is 9**9**9.", "\\boxed{(9**9)**9**9}",
    "\\boxed{10^{10^{10}}}", "$2^{2^{2^{2^{2^{2}}}}}$",
    # delimiters that never close, and answer phrases by the hundred thousand
    "\\(" * 200_000, "\\[" * 200_000, "$a" * 200_000, "the answer is " * 50_000,
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


def test_power_towers_are_refused_without_waiting_for_the_time_limit():
    """9**9**9 has 370 million digits: refused as too large at once, in the caller (no worker,
    no timeout), on every path that takes an answer in: a bare completion, a box, a phrase."""
    for completion in ["\\boxed{9**9**9}", "9**9**9", "The answer is $9^{9^{9}}$."]:
        start = time.monotonic()
        score = verify_math(completion, "1")
        assert score == 0.0 and not isinstance(score, Flagged)  # refused, not a timeout
        assert time.monotonic() - start < 0.5


def test_ordinary_symbolic_answers_still_match_through_the_bound():
    assert verify_math("so \\boxed{\\frac{1}{2}x}", "\\frac{x}{2}") == 1.0
    assert verify_math("\\boxed{x^2+2x+1}", "(x+1)^2") == 1.0
