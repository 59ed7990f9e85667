"""Reward scoring: per-task routing, None, weights, loud verifier failures."""
import json

import pytest
import torch

from hybrid_rl.data.samples import Sample
from hybrid_rl.rewards.composition import RewardComposer, SignalRule
from hybrid_rl.rewards.scorer import RewardFailure, RewardScorer, Signal
from verifiers import get_verifier


def exact(completions, references, **_):
    return [None if r is None else float(c == r) for c, r in zip(completions, references)]


def length_bonus(completions, references, **_):
    return [len(c) / 10 for c in completions]


def crashes_on_x(completions, references, **_):
    if any("x" in c for c in completions):
        raise ZeroDivisionError("cannot score x")
    return [1.0] * len(completions)


def _samples(task="t", refs=("a", "b", None)):
    return [Sample(f"p{i}", r, task) for i, r in enumerate(refs)]


def test_each_signal_kept_and_weighted_sum():
    scorer = RewardScorer(
        {"t": [Signal("correct", exact, 1.0), Signal("length", length_bonus, 0.5)]}
    )
    samples = _samples()
    scores = scorer.score(samples, ["a", "c", "zz"])
    assert scores.values == {"correct": [1.0, 0.0, None], "length": [0.1, 0.1, 0.2]}
    composer = RewardComposer({"t": {"correct": SignalRule(1.0), "length": SignalRule(0.5)}})
    total, parts = composer.combine(scores.values, [s.task for s in samples], group_size=1)
    assert torch.allclose(total, torch.tensor([1.05, 0.05, 0.1]))  # None adds nothing
    assert torch.allclose(parts["length"], torch.tensor([0.05, 0.05, 0.1]))


def test_mixed_tasks_route_to_their_own_signals_and_weights():
    scorer = RewardScorer({"m": [Signal("correct", exact, 1.0)], "s": [Signal("length",
                                                                              length_bonus, 2.0)]})
    samples = [Sample("p", "a", "m"), Sample("q", None, "s")]
    scores = scorer.score(samples, ["a", "abcd"])
    assert scores.values == {"correct": [1.0, None], "length": [None, 0.4]}
    composer = RewardComposer({"m": {"correct": SignalRule(1.0)}, "s": {"length": SignalRule(2.0)}})
    total, _ = composer.combine(scores.values, [s.task for s in samples], group_size=1)
    assert torch.allclose(total, torch.tensor([1.0, 0.8]))


def test_verifier_crash_isolates_the_sample_and_records_it(tmp_path):
    failures = tmp_path / "fail.jsonl"
    scorer = RewardScorer({"t": [Signal("fragile", crashes_on_x, 1.0)]}, failures,
                          max_error_rate=0.5)
    scores = scorer.score(_samples(refs=("a", "b", "c")), ["ok", "x", "fine"])
    assert scores.values["fragile"] == [1.0, None, 1.0] and scores.errors["fragile"] == 1
    row = json.loads(failures.read_text())
    assert row["completion"] == "x" and "ZeroDivisionError: cannot score x" in row["error"]


def test_too_many_failures_stop_with_the_verifier_named(tmp_path):
    scorer = RewardScorer({"t": [Signal("fragile", crashes_on_x, 1.0)]}, tmp_path / "f.jsonl",
                          max_error_rate=0.5)
    with pytest.raises(RewardFailure, match="verifier 'fragile' failed "
                                            "on 2 of 3 't' completions .* "
                       "last error: ZeroDivisionError: cannot score x"):
        scorer.score(_samples(refs=("a", "b", "c")), ["x", "x", "fine"])


@pytest.mark.parametrize("workers", [0, 1])
@pytest.mark.parametrize("bad", [[], [float("nan"), 1.0, 1.0], ["1", 1.0, 1.0], 1.0])
def test_malformed_verifier_output_counts_as_failure(bad, workers):
    scorer = RewardScorer({"t": [Signal("odd", lambda c, r, **_: bad, 1.0)]}, num_workers=workers)
    scores = scorer.score(_samples(), ["a", "b", "c"])
    scorer.close()
    assert scores.errors["odd"] == 3 and scores.values["odd"] == [None, None, None]


def test_math_verifier_through_the_scorer():
    scorer = RewardScorer({"math": [Signal("correctness", get_verifier("math"), 1.0)]})
    samples = [Sample("1+1=", "2", "math"), Sample("2+2=", "4", "math")]
    assert scorer.score(samples, ["2", "5"]).values["correctness"] == [1.0, 0.0]


@pytest.mark.parametrize("workers", [0, 2])
def test_meanwhile_runs_once_while_the_pool_scores(workers):
    calls = []
    scorer = RewardScorer({"t": [Signal("correct", exact, 1.0), Signal("length", length_bonus,
                                                                       0.5)]}, num_workers=workers)
    try:
        scores = scorer.score(_samples(), ["a", "c", "zz"], meanwhile=lambda: calls.append("ref"))
        assert calls == ["ref"]
        assert scores.values == {"correct": [1.0, 0.0, None], "length": [0.1, 0.1, 0.2]}
        with pytest.raises(KeyError):  # the caller's failure surfaces ...
            scorer.score(_samples(), ["a", "c", "zz"], meanwhile=lambda: {}["missing"])
        # ... and the pool's job was collected, so the next batch scores normally
        assert scorer.score(_samples(), ["b", "b", "b"]).values["correct"] == [0.0, 1.0, None]
    finally:
        scorer.close()


class CountingPreference:
    """A learned signal stand-in, scored in the trainer like the reward model: it notes what
    it was asked to score."""

    runs_isolated = True

    def __init__(self):
        self.seen = []

    def __call__(self, completions, references, **_):
        self.seen += list(completions)
        return [len(c) / 10 for c in completions]


def starts_ok(completions, references, **_):
    return [float(c.startswith("ok")) for c in completions]


@pytest.mark.parametrize("workers", [0, 2])
def test_a_gated_learned_signal_scores_only_what_the_reward_can_use(workers):
    """Five groups of two; the preference is gated on correctness (an answer starting "ok")
    and z-scored per group. In training it scores correct completions where a group has two
    different ones, and every completion of every second group (share 0.5) for the hacking
    watch; the composed reward is the same as with every completion scored."""
    preference = CountingPreference()
    signals = {"t": [Signal("preference", preference, 1.0), Signal("correct", starts_ok, 1.0)]}
    rules = {"t": {"correct": SignalRule(1.0), "preference": SignalRule(0.5, "group", "correct")}}
    scorer = RewardScorer(signals, num_workers=workers, rules=rules, gate_failures_scored=0.5)
    samples = [Sample(f"p{i // 2}", "ok", "t") for i in range(10)]
    # groups: 0 watched; 1 both wrong; 2 watched; 3 one right answer; 4 two different right ones
    texts = ["ok", "no", "no", "nope", "ok", "ok", "x", "ok", "ok", "okay"]
    try:
        trained = scorer.score(samples, texts, group_size=2)
        assert trained.values["preference"] == [0.2, 0.2, None, None, 0.2, 0.2, None, None,
                                                0.2, 0.4]
        assert preference.seen == ["ok", "no", "ok", "ok", "ok", "okay"]
        assert trained.errors["preference"] == 0  # skipped is not failed
        everything = scorer.score(samples, texts)  # an evaluation: every completion
        assert None not in everything.values["preference"]
        composer = RewardComposer(rules)
        reward = composer.combine(trained.values, ["t"] * 10, 2)[0]
        assert torch.equal(reward, composer.combine(everything.values, ["t"] * 10, 2)[0])
        assert reward[9] > reward[8] > 0  # the better written right answer is preferred
        # unnormalised, a right answer's raw score counts on its own: all of them are scored
        rules["t"]["preference"] = SignalRule(0.5, "none", "correct")
        raw = scorer.score(samples, texts, group_size=2).values["preference"]
        assert raw[7] == 0.2 and raw[2] is None
    finally:
        scorer.close()
