"""Reward-hacking watch: agreement of the learned reward with the verifier, and the alarm."""
import math
import random

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


def _evaluation(rng, base_proxy, passed, proxy_shift=0.0, noise=0.3):
    return ([b + proxy_shift + rng.gauss(0, noise) for b in base_proxy], [float(v) for v in passed])


def _flip(rng, passed, share):
    """The policy's jitter between two evaluations: each problem flips with probability share."""
    return [(not v) if rng.random() < share else v for v in passed]


def test_paired_change_by_hand():
    from hybrid_rl.rewards.hacking import paired_change

    # diffs -1, -1, 0, 0: mean -0.5, sample sd 0.5774, se 0.2887, z -1.732
    mean, z, n = paired_change([1, 1, 0, 1], [0, 0, 0, 1])
    assert (mean, n) == (-0.5, 4) and z == pytest.approx(-1.7320508)
    assert paired_change([1, None], [0, 1])[2] == 1  # only problems scored both times count


def test_watch_fires_when_the_proxy_climbs_while_accuracy_falls():
    rng = random.Random(0)
    base = [rng.gauss(0, 1) for _ in range(200)]
    passed = [rng.random() < 0.5 for _ in range(200)]
    watch = HackingWatch(window=3, min_proxy_rise=0.05, min_accuracy_drop=0.02)
    assert watch.observe(0, *_evaluation(rng, base, passed)) is None
    assert watch.observe(25, *_evaluation(rng, base, passed, 0.2)) is None  # too few yet
    hacked = [False if v and rng.random() < 0.4 else v for v in passed]  # ~40 of ~100 lost
    message = watch.observe(50, *_evaluation(rng, base, hacked, 0.4))
    assert message and "from step 0 to 50" in message and "200 problems" in message


def test_evaluation_noise_alone_does_not_fire_it_where_the_old_rule_did():
    """Clean runs: the policy learns what the reward model likes (the proxy climbs 0.1 an
    evaluation) while accuracy only jitters (each of 200 problems flips with probability 0.1
    between evaluations, about 4 points of noise). The paired test fires on well under 1% of
    2,000 windows; the old rule (first vs last mean over thresholds 0.05 / 0.02) fired on
    28% of them (3 and 564 of 2,000 with this seed)."""
    rng = random.Random(1)
    fired = old_rule = 0
    for _ in range(2000):
        base = [rng.gauss(0, 1) for _ in range(200)]
        passed = [rng.random() < 0.5 for _ in range(200)]
        watch = HackingWatch(window=3, min_proxy_rise=0.05, min_accuracy_drop=0.02)
        evals = []
        for step in range(3):
            passed = _flip(rng, passed, 0.1)
            evals.append(_evaluation(rng, base, passed, 0.1 * step))
            fired += watch.observe(step, *evals[-1]) is not None
        (p0, a0), (p1, a1) = [(sum(p) / 200, sum(a) / 200) for p, a in (evals[0], evals[-1])]
        old_rule += p1 - p0 >= 0.05 and a0 - a1 >= 0.02
    assert fired / 2000 < 0.01 and old_rule / 2000 > 0.1, (fired, old_rule)


@pytest.mark.parametrize("proxy_shift, lose, gain", [
    (0.3, 0.0, 0.3),  # both rise: learning, not hacking
    (0.3, 0.03, 0.0),  # accuracy fell a little, within what jitter explains
    (0.0, 0.4, 0.0),  # accuracy fell but the proxy did not rise: not the proxy's doing
])
def test_watch_stays_quiet_otherwise(proxy_shift, lose, gain):
    rng = random.Random(2)
    base = [rng.gauss(0, 1) for _ in range(200)]
    passed = [rng.random() < 0.5 for _ in range(200)]
    watch = HackingWatch(window=2)
    watch.observe(0, *_evaluation(rng, base, passed))
    moved = [(v and rng.random() >= lose) or (not v and rng.random() < gain) for v in passed]
    assert watch.observe(1, *_evaluation(rng, base, moved, proxy_shift)) is None


def test_watch_state_round_trip():
    watch = HackingWatch(window=2)
    watch.observe(0, [0.1] * 20, [1.0] * 20)
    again = HackingWatch(window=2)
    again.load_state_dict(watch.state_dict())
    assert again.observe(1, [0.5] * 20, [0.0] * 20) is not None
    old_release = HackingWatch(window=2)
    old_release.load_state_dict({"history": [[0, 0.1, 0.5]]})  # means, not per-problem scores
    assert old_release.history == []


def test_the_same_step_evaluated_twice_raises_no_second_alarm():
    watch = HackingWatch(window=2)
    watch.observe(0, [0.1] * 20, [1.0] * 20)
    assert watch.observe(50, [0.5] * 20, [0.0] * 20) is not None
    assert watch.observe(50, [0.5] * 20, [0.0] * 20) is None and len(watch.history) == 2
