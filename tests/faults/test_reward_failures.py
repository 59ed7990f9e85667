"""Verifiers that raise, hang or crash their worker: counted, saved, None; too many stop the run."""
import json
import os
import time

import pytest

from hybrid_rl.data.samples import Sample
from hybrid_rl.rewards.scorer import RewardFailure, RewardScorer, Signal


def moody(completions, references, **_):
    """'hang' loops forever, 'crash' kills its process, 'raise' throws; anything else scores 1."""
    out = []
    for c in completions:
        if c == "hang":
            while True:
                pass
        if c == "crash":
            os._exit(11)
        if c == "raise":
            raise KeyError("no such thing")
        out.append(1.0)
    return out


def _scorer(tmp_path, rate=0.9):
    return RewardScorer({"t": [Signal("moody", moody, 1.0)]}, tmp_path / "failures.jsonl",
                        max_error_rate=rate, num_workers=2, timeout_s=0.5)


def test_each_failure_kind_costs_one_sample_and_is_recorded(tmp_path):
    scorer = _scorer(tmp_path)
    samples = [Sample(f"p{i}", "r", "t") for i in range(5)]
    start = time.monotonic()
    scores = scorer.score(samples, ["ok", "hang", "crash", "raise", "fine"])
    scorer.close()
    assert time.monotonic() - start < 5
    assert scores.values["moody"] == [1.0, None, None, None, 1.0]
    assert scores.errors["moody"] == 2 and scores.timeouts["moody"] == 1
    rows = [json.loads(line) for line in (tmp_path / "failures.jsonl").read_text().splitlines()]
    errors = {r["completion"]: r["error"] for r in rows}
    assert "timed out after 0.5 s" in errors["hang"]
    assert "worker crashed (exit code 11)" in errors["crash"]
    assert errors["raise"].startswith("KeyError")
    assert all(r["prompt"] and r["signal"] == "moody" for r in rows)


def test_failure_rate_above_the_threshold_stops_naming_the_verifier(tmp_path):
    scorer = _scorer(tmp_path, rate=0.5)
    with pytest.raises(RewardFailure, match=r"verifier 'moody' failed on 2 of 3 .*worker crashed"):
        scorer.score([Sample("p", "r", "t")] * 3, ["raise", "crash", "ok"])
    scorer.close()


def flagging(completions, references, **_):
    from verifiers import Flagged

    return [
        Flagged(0.0, "math check timed out: slow")
        if c == "slow"
        else Flagged(0.0, "math check failed: odd")
        if c == "odd"
        else 1.0
        for c in completions
    ]


@pytest.mark.parametrize("workers", [0, 2])
def test_flagged_scores_keep_their_value_and_are_counted(tmp_path, workers):
    scorer = RewardScorer({"t": [Signal("m", flagging, 1.0)]}, tmp_path / "f.jsonl",
                          num_workers=workers)
    scores = scorer.score([Sample("p", "r", "t")] * 3, ["slow", "odd", "ok"])
    scorer.close()
    assert scores.values["m"] == [0.0, 0.0, 1.0]
    assert scores.timeouts["m"] == 1 and scores.errors["m"] == 1
    assert len((tmp_path / "f.jsonl").read_text().splitlines()) == 2


def test_a_sandbox_that_breaks_mid_run_stops_it_within_the_window(tmp_path, monkeypatch):
    """A broken sandbox scores Flagged(0.0): valid-looking zeros. They must stop the run once
    they pass max_error_rate over the window, not train on zeros with only warnings."""
    from sandbox import ExecResult, SandboxSettings
    from verifiers.code import CodeVerifier

    verifier = CodeVerifier(SandboxSettings(workers=1, timeout_s=5.0))
    working, calls = verifier.pool.run_batch, []

    def breaks_after_two_calls(jobs):
        calls.append(len(jobs))
        if len(calls) <= 2:
            return working(jobs)
        return [ExecResult("error", error="the sandbox is gone (BrokenPipeError)") for _ in jobs]

    monkeypatch.setattr(verifier.pool, "run_batch", breaks_after_two_calls)
    scorer = RewardScorer({"code": [Signal("code", verifier, 1.0)]}, tmp_path / "f.jsonl",
                          max_error_rate=0.5, error_window=4)
    samples = [Sample("p", "assert f() == 1", "code", meta={"entry_point": "f"})] * 2
    step_scores = []
    with pytest.raises(RewardFailure, match=r"'code' failed on 6 of 8 'code' completions over "
                                            r"the last 4 calls .*the sandbox is gone"):
        for step in range(6):
            programs = [f"def f():\n    return 1  # step {step} sample {i}" for i in range(2)]
            step_scores.append(scorer.score(samples, programs).values["code"])
    scorer.close()
    # two good steps, two all-zero steps within the allowed rate, stopped on the fifth
    assert step_scores == [[1.0, 1.0], [1.0, 1.0], [0.0, 0.0], [0.0, 0.0]]
