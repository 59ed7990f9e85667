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
