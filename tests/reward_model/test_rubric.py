"""The written rubric that stands in for human raters, and the pairs it labels."""
import random

from hybrid_rl.rewards.learned.rubric import (
    candidate_responses,
    preferred_style,
    rubric_pairs,
    rubric_points,
    rubric_score,
)


def test_rubric_prefers_one_marked_answer_with_brief_working():
    best = rubric_score("347+589 = 936. Answer: 936", "answer")
    assert best == 1.5
    assert rubric_score("Answer: 936", "answer") == 1.0 == rubric_score("936", "answer")
    for worse in ("Answer: 936, or maybe 937.", "Answer: 936. Answer: 936. Answer: 936.",
                  "Let me think about this carefully. Basically it is 936. Answer: 936",
                  "Answer: 936\nAnswer: 935", "936 12", ""):
        assert rubric_score(worse, "answer") < 1.0, worse


def test_the_preferred_style_is_the_rubrics_top_mark_only():
    # what evaluate.py counts as "in the rubric's preferred style"
    assert preferred_style("47+85=132. Answer: 132", "answer")
    assert preferred_style("x*8  # from the examples", "code")
    for short_of_it in ("132", "Answer: 132", "47+85=132. Answer: 132. Answer: 132",
                        "Let me think. 47+85=132. Answer: 132",
                        "47+85=132. Answer: 132, or maybe 133",
                        "x*8", ""):
        assert not preferred_style(short_of_it, "code" if "x" in short_of_it else "answer")


def test_rubric_names_the_rules_it_applied():
    assert rubric_points("Answer: 9, or maybe 8.", "answer") == {
        "final_answer": 1.0,
        "hedging": -1.0,
    }
    assert rubric_points("Answer: 9\nAnswer: 8", "answer") == {"final_answer": -1.5}
    assert rubric_points("9 9 9", "answer") == {"final_answer": -1.0, "repetition": -1.0}
    assert rubric_points("", "answer") == {"empty": -3.0}


def test_code_style_judges_the_function_body():
    assert rubric_score("x*8  # from the examples", "code") == 1.5
    assert rubric_score("x*8", "code") == 1.0
    assert rubric_score("x*8\n    return x*9", "code") == -1.5  # two different answers
    assert rubric_score("x*8\n    return x*8\n    return x*8", "code") == 0.0  # repeated
    # hedging, no credit for the comment
    assert rubric_score("x*8  # or maybe x*9, not sure", "code") == 0.0


def test_candidates_keep_the_policy_samples_and_dress_their_answer():
    cands = candidate_responses("12+30=", ["42", "4 2"], "answer", random.Random(0))
    assert (
        cands[:2] == ["42", "4 2"]
        and "12+30 = 42. Answer: 42" in cands
        and len(cands) == len(set(cands))
    )


def test_pairs_follow_the_rubric_except_the_flipped_share():
    prompts = [f"{i}+{i}=" for i in range(400)]
    pairs = rubric_pairs(prompts, [[str(2 * i)] for i in range(400)], style="answer",
                         pairs_per_prompt=2, label_noise=0.2, seed=3)
    assert len(pairs) == 800
    for p in pairs:
        higher = rubric_score(p.chosen, "answer") > rubric_score(p.rejected, "answer")
        # a flipped pair is exactly one whose label goes against the rubric
        assert higher != p.flipped
    flipped = sum(p.flipped for p in pairs) / len(pairs)
    assert 0.15 < flipped < 0.25
    again = rubric_pairs(prompts, [[str(2 * i)] for i in range(400)], style="answer",
                         pairs_per_prompt=2, label_noise=0.2, seed=3)
    assert again == pairs  # seeded


def test_no_noise_means_no_flips_and_ties_make_no_pairs():
    pairs = rubric_pairs(
        ["1+1="], [["2"]], style="answer", pairs_per_prompt=50, label_noise=0.0, seed=0
    )
    assert pairs and not any(p.flipped for p in pairs)
    assert all(rubric_score(p.chosen, "answer") != rubric_score(p.rejected,
                                                                "answer") for p in pairs)
