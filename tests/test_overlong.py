"""Overlong shaping (verifiers/length.py, DAPO's form) by hand, and the token counts it reads
riding on the completion text through the worker pool."""
import pickle

import pytest

from hybrid_rl.data.samples import Sample
from hybrid_rl.rewards.scorer import RewardScorer, Signal
from hybrid_rl.rollout import Completion
from verifiers.length import OverlongPenalty, overlong_penalty
from verifiers.registry import get_verifier


@pytest.mark.parametrize("length, want", [(0, 0.0), (12, 0.0), (13, -0.25), (14, -0.5),
                                          (16, -1.0), (17, -1.0)])
def test_penalty_falls_linearly_over_the_buffer(length, want):
    # limit 16, buffer 4: free up to 12 tokens, then (12 - length) / 4, -1 beyond the limit
    assert overlong_penalty(length, 16, 4) == want


def test_the_default_buffer_is_a_fifth_of_the_limit():
    texts = [Completion("a", 7, 10), Completion("b", 9, 10), Completion("c", 10, 10)]
    # buffer ceil(10 / 5) = 2: 8 tokens free, 9 -> -0.5, the limit -> -1
    assert get_verifier("overlong")(texts, [None] * 3) == [0.0, -0.5, -1.0]
    assert OverlongPenalty(buffer=100)([Completion("x", 5, 10)], [None]) == [-0.5]  # <= limit


def test_plain_text_is_refused_with_the_reason():
    with pytest.raises(TypeError, match="token count"):
        OverlongPenalty()(["no counts"], [None])
    with pytest.raises(ValueError, match="buffer"):
        OverlongPenalty(buffer=0)


def test_counts_survive_the_worker_pool_and_other_verifiers_see_text():
    one = pickle.loads(pickle.dumps(Completion("12", 3, 8)))
    assert (one, one.tokens, one.limit) == ("12", 3, 8) and isinstance(one, str)
    samples = [Sample("1+2=", "3", "default"), Sample("1+1=", "2", "default")]
    texts = [Completion("3", 2, 4), Completion("7 7 7", 4, 4)]
    scorer = RewardScorer({"default": [Signal("overlong", OverlongPenalty(buffer=2), 1.0),
                                       Signal("correctness", get_verifier("math"), 1.0)]},
                          None, num_workers=1)
    try:
        values = scorer.score(samples, texts).values
    finally:
        scorer.close()
    assert values == {"overlong": [0.0, -1.0], "correctness": [1.0, 0.0]}
