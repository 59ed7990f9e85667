"""The code verifier: extraction, program assembly, scores, failure accounting, cache."""
import pytest

import verifiers.code as code
from hybrid_rl.data.samples import Sample
from hybrid_rl.rewards.scorer import RewardScorer, Signal
from sandbox import SandboxSettings
from verifiers import Flagged, get_verifier

TESTS = "assert f(2) == 5\nassert f(10) == 13\n"
META = {"entry_point": "f", "program_prefix": "def f(x):\n    return "}


SETTINGS = SandboxSettings(workers=2, timeout_s=2.0)


@pytest.fixture(scope="module")
def verifier():
    v = get_verifier("code", sandbox=SETTINGS)
    yield v
    v.close()


def sample(tests=TESTS, meta=META):
    return Sample("# f(1)=4\ndef f(x):\n    return ", tests, "code", None, dict(meta))


def test_extract_code_prefers_the_last_fenced_function():
    text = ("Try:\n```python\nx = 1\n```\nthen\n```py\ndef f(x):\n    return "
            "x\n```\n```\nprint(1)\n```")
    assert code.extract_code(text) == "def f(x):\n    return x\n"
    assert code.extract_code("x+3") == "x+3"
    assert (
        code.extract_code("```python\ndef f(x):\n    return x  # no closing fence")
        == "def f(x):\n    return x  # no closing fence"
    )


def test_build_program_continues_or_replaces():
    assert code.build_program("x+3", META) == "def f(x):\n    return x+3"
    whole = "```python\ndef f(x):\n    return x + 3\n```"
    assert code.build_program(whole, dict(META,
                                          context="import math\n")) == ("import math\n\ndef "
                                                                        "f(x):\n    return x + 3\n")


def test_scores_pass_fail_and_partial(verifier):
    completions = ["x+3", "3+x", "x+1+2", "x+4"]
    samples = [sample()] * 4
    assert verifier(completions, [TESTS] * 4, samples=samples) == [1.0, 1.0, 1.0, 0.0]
    partial = sample("assert f(2) == 5\nassert f(10) == 21\n")
    fraction = get_verifier("code_fraction", sandbox=SETTINGS)
    try:
        assert fraction(["x+3"], [partial.reference], samples=[partial]) == [0.5]
    finally:
        fraction.close()


def test_no_tests_means_no_opinion(verifier):
    assert verifier(["x+3"], [None], samples=[sample(None)]) == [None]


def test_timeouts_and_errors_are_flagged_and_counted():
    verifier = get_verifier("code", sandbox=SETTINGS)
    scorer = RewardScorer({"code": [Signal("correctness", verifier, 1.0)]}, num_workers=2)
    try:
        # the loop runs in constant memory: a growing list could meet the memory limit before
        # the time limit (an ordinary failure, not a timeout), depending on the machine's speed
        scores = scorer.score([sample()] * 3, ["x+3", "x+(", "next(y for y in iter(int, 1) if y)"])
    finally:
        scorer.close()
    values = scores.values["correctness"]
    assert values[0] == 1.0
    assert isinstance(values[1],
                      Flagged) and "SyntaxError" in values[1].reason and not values[1].record
    assert isinstance(values[2], Flagged) and "timed out" in values[2].reason
    assert (scores.errors["correctness"], scores.timeouts["correctness"]) == (1, 1)


def test_identical_jobs_run_once(verifier, monkeypatch):
    calls = []
    real = verifier.pool.run_batch
    monkeypatch.setattr(verifier.pool, "run_batch",
                        lambda jobs: calls.append(len(jobs)) or real(jobs))
    verifier._cache.clear()
    assert verifier(["x+3"] * 8 + ["x+4"], [TESTS] * 9, samples=[sample()] * 9) == [1.0] * 8 + [0.0]
    assert verifier(["x+3"], [TESTS], samples=[sample()]) == [1.0]
    assert calls == [2, 0]


def test_every_generated_demonstration_passes_its_own_tests(verifier):
    from hybrid_rl.tasks.functions import functions

    rows = functions(60, seed=3, families="add,sub,mul,rsub")
    samples = [Sample(p, t, "code", d, m) for p, t, d, m in rows]
    assert verifier([s.demonstration for s in samples], [s.reference for s in samples],
                    samples=samples) == [1.0] * 60
    wrong = [s.demonstration + "+1" for s in samples]
    assert verifier(wrong, [s.reference for s in samples], samples=samples) == [0.0] * 60
