"""Reward-model ensembles: standardised members, the uncertainty-penalised score, the spread
reported beside the scores, and the disagreement watch (numbers by hand; no model trained)."""
import math

import pytest
import torch
from helpers.runs import config_error

from hybrid_rl.data.samples import Sample
from hybrid_rl.rewards.composition import RewardComposer, SignalRule
from hybrid_rl.rewards.hacking import DisagreementWatch
from hybrid_rl.rewards.learned.ensemble import RewardEnsemble, penalised, standardisation
from hybrid_rl.rewards.scorer import RewardScorer, Signal


class Linear:
    """A stand-in reward model: score = a * len(response) + b."""

    def __init__(self, a, b):
        self.a, self.b = a, b

    def score(self, prompts, responses, batch_size=128):
        return [self.a * len(r) + self.b for r in responses]


RESPONSES = ["a", "bbb", "cc", "dddddd"]


def test_members_that_differ_by_offset_and_scale_agree_after_standardisation():
    """Bradley-Terry fixes only score differences: a member 10x the other plus 100 is the same
    judge, and must not read as disagreement."""
    members = [Linear(1.0, 0.0), Linear(10.0, 100.0)]
    stats = [standardisation(torch.tensor(m.score([""] * 4, RESPONSES), dtype=torch.float64))
             for m in members]
    ensemble = RewardEnsemble(members, stats)
    scores = ensemble.member_scores([""] * 4, RESPONSES)
    assert torch.allclose(scores[0], scores[1])
    assert penalised(scores, 1.0)[1] == pytest.approx([0.0] * 4, abs=1e-9)
    lengths = torch.tensor([1.0, 3.0, 2.0, 6.0], dtype=torch.float64)
    expected = (lengths - lengths.mean()) / lengths.std()
    assert ensemble.score([""] * 4, RESPONSES) == pytest.approx(expected.tolist())


def test_penalised_score_by_hand():
    members = torch.tensor([[1.0, 2.0, 0.0], [3.0, 2.0, 4.0]], dtype=torch.float64)
    scores, spread = penalised(members, 0.5)
    # means 2, 2, 2; standard deviations (n-1) sqrt(2), 0, sqrt(8)
    assert spread == pytest.approx([math.sqrt(2), 0.0, math.sqrt(8)])
    assert scores == pytest.approx([2 - 0.5 * math.sqrt(2), 2.0, 2 - 0.5 * math.sqrt(8)])


def test_an_ensemble_needs_two_members():
    with pytest.raises(ValueError, match="at least two members"):
        RewardEnsemble([Linear(1, 0)], [{"score_mean": 0.0, "score_std": 1.0}])


class SpreadVerifier:
    """In-process verifier reporting a diagnostic series; raises on 'boom' (retry path)."""

    runs_isolated = True
    diagnostics = ("disagreement",)

    def __init__(self):
        self._last = []

    def take_diagnostics(self):
        last, self._last = self._last, []
        return {"disagreement": last}

    def __call__(self, completions, references, samples=None, **_):
        if any(c == "boom" for c in completions):
            raise RuntimeError("boom")
        self._last = [len(c) / 10 for c in completions]
        return [float(len(c)) for c in completions]


def test_the_scorer_reports_the_series_beside_the_scores_and_the_reward_ignores_it():
    samples = [Sample(f"p{i}", None, "t") for i in range(4)]
    scorer = RewardScorer({"t": [Signal("preference", SpreadVerifier(), 1.0)]})
    values = scorer.score(samples, ["ab", "boom", "abcd", "a"]).values
    assert values["preference"] == [2.0, None, 4.0, 1.0]  # the batch failed: retried one by one
    assert values["preference/disagreement"] == [0.2, None, 0.4, 0.1]  # aligned, None where failed
    total, parts = RewardComposer({"t": {"preference": SignalRule(1.0)}}).combine(
        values, ["t"] * 4, group_size=1)
    assert total.tolist() == [2.0, 0.0, 4.0, 1.0] and set(parts) == {"preference"}


def test_disagreement_watch_fires_once_per_crossing_on_the_recent_mean():
    watch = DisagreementWatch(baseline=0.1, ratio=2.0, steps=3)
    assert [watch.observe(s, v) for s, v in ((1, 0.1), (2, 0.1), (3, 0.1))] == [None] * 3
    assert watch.level() == pytest.approx(1.0)
    warning = watch.observe(4, 0.5)  # recent mean (0.1 + 0.1 + 0.5) / 3 = 2.33x the baseline
    assert warning is not None and "2.33x" in warning and "steps 2-4" in warning
    assert watch.observe(5, 0.5) is None  # still above: said once
    assert watch.observe(6, math.nan) is None and watch.recent == [0.1, 0.5, 0.5]  # not scored
    for step in (7, 8):
        watch.observe(step, 0.04)  # back under: (0.5 + 0.04 + 0.04) / 3 = 1.93x
    assert not watch.above
    assert watch.observe(9, 1.0) is not None  # a new crossing is said again


def test_disagreement_watch_quiet_before_its_window_fills_or_when_off():
    assert DisagreementWatch(0.1, 2.0, 3).observe(1, 5.0) is None  # one step is not a trend
    off = DisagreementWatch(0.1, 0.0, 1)
    assert off.observe(1, 5.0) is None and off.level() == pytest.approx(50.0)


def test_disagreement_watch_state_round_trip():
    watch = DisagreementWatch(0.1, 2.0, 2)
    watch.observe(1, 0.3)
    watch.observe(2, 0.3)
    again = DisagreementWatch(0.1, 2.0, 2)
    again.load_state_dict(watch.state_dict())
    assert again.recent == watch.recent and again.above
    assert again.observe(3, 0.3) is None  # already said before the checkpoint


@pytest.mark.parametrize("overrides, message", [
    (["+task.rewards.correctness.uncertainty_penalty=1.0"],
     "rewards.correctness.uncertainty_penalty: applies to `verifier: preference`"),
    (["task=math_hybrid", "+task.rewards.preference.uncertainty_penalty=-1"],
     "rewards.preference.uncertainty_penalty: must be >= 0"),
    (["reward_model.ensemble_size=0"], "ensemble_size: must be > 0"),
    (["reward.hacking_watch.disagreement_steps=0"], "disagreement_steps: must be > 0"),
])
def test_ensemble_settings_are_checked(overrides, message):
    assert message in config_error("config", *overrides)
