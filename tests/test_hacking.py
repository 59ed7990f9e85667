"""Reward-hacking watch: agreement of the learned reward with the verifier, and the alarm."""
import math

import pytest

from hybrid_rl.rewards.hacking import HackingWatch, agreement, spearman


def test_spearman_by_hand():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # ties share their mean rank: ranks (0.5, 0.5, 2) vs (0, 1, 2) -> rho = 0.8660
    assert spearman([1, 1, 2], [1, 2, 3]) == pytest.approx(math.sqrt(3) / 2)
    assert math.isnan(spearman([1, 1, 1], [1, 2, 3])) and math.isnan(spearman([1], [1]))


def test_prefers_failing_counts_same_prompt_pairs_only():
    proxy = [0.9, 0.1, 0.5, 0.5, 0.2, 0.8]
    verified = [0.0, 1.0, 1.0, 0.0, 1.0, 1.0]
    out = agreement(proxy, verified, group_size=2)
    # group 1: failing 0.9 > passing 0.1 -> 1; group 2: tie -> 1/2; group 3: no failing answer
    assert out["prefers_failing"] == pytest.approx(1.5 / 2)
    assert -1 <= out["rank_corr"] <= 1


def test_agreement_skips_unscored_and_reports_nan_when_nothing_compares():
    out = agreement([1.0, None, 0.0, 2.0], [1.0, 0.0, None, 1.0], group_size=2)
    assert math.isnan(out["prefers_failing"])  # no (pass, fail) pair both signals scored
    assert math.isnan(agreement([1.0, 2.0], [1.0, 1.0], 2)["rank_corr"])  # verifier constant


def test_watch_fires_when_the_proxy_climbs_while_accuracy_falls():
    watch = HackingWatch(window=3, min_proxy_rise=0.05, min_accuracy_drop=0.02)
    assert watch.observe(0, 0.10, 0.50) is None
    assert watch.observe(25, 0.20, 0.49) is None  # not enough history yet
    message = watch.observe(50, 0.40, 0.40)
    assert message and "rose 0.100 -> 0.400" in message and "fell 0.500 -> 0.400" in message


@pytest.mark.parametrize("evals", [
    [(0.1, 0.5), (0.2, 0.6), (0.4, 0.7)],  # both rise: learning, not hacking
    [(0.4, 0.5), (0.3, 0.45), (0.2, 0.4)],  # both fall
    [(0.1, 0.5), (0.12, 0.45), (0.13, 0.4)],  # proxy rise below the threshold
    [(0.1, 0.5), (0.4, 0.5), (0.8, 0.49)],  # accuracy drop below the threshold
])
def test_watch_stays_quiet_otherwise(evals):
    watch = HackingWatch(window=3, min_proxy_rise=0.05, min_accuracy_drop=0.02)
    assert all(watch.observe(i, p, a) is None for i, (p, a) in enumerate(evals))


def test_watch_state_round_trip():
    watch = HackingWatch(window=2)
    watch.observe(0, 0.1, 0.5)
    again = HackingWatch(window=2)
    again.load_state_dict(watch.state_dict())
    assert again.observe(1, 0.3, 0.4) is not None


def test_the_same_step_evaluated_twice_raises_no_second_alarm():
    watch = HackingWatch(window=3, min_proxy_rise=0.05, min_accuracy_drop=0.02)
    watch.observe(0, 0.1, 0.5)
    watch.observe(25, 0.2, 0.45)
    assert watch.observe(50, 0.4, 0.4) is not None
    assert watch.observe(50, 0.4, 0.4) is None and len(watch.history) == 3
