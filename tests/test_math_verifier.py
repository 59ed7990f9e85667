"""Answer extraction and numeric equivalence of the first math verifier."""
import time

import pytest

from verifiers import available_verifiers, get_verifier
from verifiers.math import answers_match, extract_answer, last_boxed, verify_math


@pytest.mark.parametrize(
    "completion, expected", [
        ("so \\boxed{42}.", "42"),
        ("first \\boxed{1} then \\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),  # the last box counts
        ("\\boxed{\\frac{\\sqrt{3}}{2}}", "\\frac{\\sqrt{3}}{2}"),  # nested braces
        ("\\fbox{7}", "7"), ("Thus the answer is 17.", "17"), ("The answer is: $-3/4$.", "-3/4"),
        ("work...\n#### 1,234", "1,234"),
        ("I think 12 then 15", "15"),  # else the last number
        ("347+589=936", "347+589=936"),  # the chain: its last part is the stated value
        ("-12", "-12"), ("no digits here", None), ("code abc3def", None),
        ("\\boxed{unclosed", None),  # unbalanced box: falls through, and there is no number
    ],
)
def test_extract_answer(completion, expected):
    assert extract_answer(completion) == expected


def test_last_boxed_handles_unbalanced():
    assert last_boxed("\\boxed{1") is None
    assert last_boxed("nothing") is None


@pytest.mark.parametrize(
    "pred, gold", [
        ("42", "42"), ("42.0", "42"), ("0.5", "\\frac{1}{2}"), ("1/2", "0.5"), ("\\dfrac{3}{4}",
                                                                                "0.75"),
        ("-\\frac{1}{4}", "-0.25"), ("1,000", "1000"), ("3e5", "300000"), ("0.0833333333",
                                                                           "\\frac{1}{12}"),
        ("$12$", "12"), ("\\text{12}", "12"), ("12.", "12"), ("\\tfrac{2}{4}", "\\frac{1}{2}"),
    ],
)
def test_equivalent_numbers(pred, gold):
    assert answers_match(pred, gold)


@pytest.mark.parametrize(
    "pred, gold", [
        ("12", "120"), ("-5", "5"), ("0.33", "\\frac{1}{3}"), ("1/3", "0.3"), ("3.14", "3.1416"),
        ("", "1"), ("1,2", "12"), ("\\frac{1}{0}", "0"),
    ],
)
def test_near_misses_are_rejected(pred, gold):
    assert not answers_match(pred, gold)


def test_verify_math_on_completions_and_boxed_golds():
    assert verify_math("The answer is \\boxed{\\frac{1}{2}}", "0.5") == 1.0
    assert verify_math("=936", "\\boxed{936}") == 1.0
    assert verify_math("=935", "936") == 0.0
    assert verify_math("", "1") == 0.0
    assert verify_math("347+589=936", "936") == 1.0  # a computation states its last part
    assert verify_math("347+589=936", "347") == 0.0
    assert verify_math("2+2=5", "4") == 0.0  # the stated value is wrong, whatever its left side


def test_huge_numbers_are_refused_quickly():
    start = time.time()
    assert verify_math("9" * 1_000_000, "1") == 0.0
    assert verify_math("1/" + "9" * 5000, "0") == 0.0
    assert time.time() - start < 2.0


def test_registered_batch_verifier_returns_none_without_reference():
    assert "math" in available_verifiers()
    scores = get_verifier("math")(["=3", "=4", "x"], ["3", "5", None])
    assert scores == [1.0, 0.0, None]


# What SmolLM2-135M-Instruct wrote for the built-in arithmetic prompts before any training
# (greedy, 32 tokens): each restates the question, and each was scored right because the
# restated sum equals the answer.
RESTATED = [
    ("22-99=", "-77", "The number 22-99 is a classic example of a mathematical identity that"),
    ("10-98=", "-88", "The number 10-98 is a classic example of a mathematical identity"),
    ("78+37=", "115", "The number 78+37 is a classic example of a mathematical identity"),
    ("What is 3 \\times 4?", "12", "We have $3 \\times 4$."),
    ("22-99=", "-77", "The answer is (22 - 99)."),
]


@pytest.mark.parametrize("prompt, gold, completion", RESTATED)
def test_an_answer_that_restates_the_question_is_not_an_answer(prompt, gold, completion):
    assert verify_math(completion, gold) == 1.0  # without the prompt: equal in value
    assert verify_math(completion, gold, prompt=prompt) == 0.0


@pytest.mark.parametrize("prompt, gold, completion", [
    ("22-99=", "-77", "22-99 = -77"),  # computed: the stated value is the answer
    ("22-99=", "-77", "-77"),
    ("Is it 7/8 or 1/2? Which is larger?", "7/8", "7/8"),  # a plain number is an answer
    ("Pick one: (A) 2\\sqrt{3} (B) 3", "2\\sqrt{3}", "(A) $2\\sqrt{3}$"),  # an option listed
    ("3*4=", "12", "\\boxed{12}"),
])
def test_a_computed_or_chosen_answer_found_in_the_prompt_still_counts(prompt, gold, completion):
    assert verify_math(completion, gold, prompt=prompt) == 1.0


def test_the_batch_verifier_reads_the_prompts_from_the_samples():
    from hybrid_rl.data.samples import Sample

    samples = [Sample("22-99=", "-77", "math"), Sample("22-99=", "-77", "math")]
    scores = get_verifier("math")(["22-99", "-77"], ["-77", "-77"], samples=samples)
    assert scores == [0.0, 1.0]
