"""The floating-point evaluator that decides most answer pairs in the caller, and the text
reading around it (extraction, LaTeX functions), on hand-checked values."""
import pytest

from verifiers.math import answers_match, extract_answer
from verifiers.math_extract import math_blocks
from verifiers.math_numeric import NeedsSympy, TooLarge, numeric_equal
from verifiers.math_parse import latex_to_text, normalise


@pytest.mark.parametrize("a, b, equal", [
    ("sqrt(12)", "2sqrt(3)", True),  # 3.4641016151 both
    ("((1)/(3))", "0.3333333", True),  # relative error 1e-7 < 1e-6
    ("((1)/(3))", "0.33", False),  # 1% off
    ("(sin(x))**(2)+(cos(x))**(2)", "1", True),  # at every probe point
    ("x**2-x-6", "(x+2)(x-3)", True),
    ("x**2+x-6", "(x+2)(x-3)", False),
    ("3+4i", "4i+3", True), ("3+4i", "3-4i", False), ("i**2", "-1", True),
    ("(log(8)/log(2))", "3", True),  # log base 2 of 8
    ("pi", "3.14", False), ("e**2", "e*e", True),
    ("6.02e23", "602000000000000000000000", True),
])
def test_numeric_equal_on_hand_checked_pairs(a, b, equal):
    assert numeric_equal(a, b) is equal


@pytest.mark.parametrize("a, reason", [
    ("f(x)", "unknown function"), ("xy", "multi-letter name (sympy splits it)"),
    ("oo", "infinity"), ("5!", "factorial"), ("1/0", "division by zero"),
    ("(" * 30 + "1" + ")" * 30, "nested too deep"), ("1.2.3", "two numbers side by side"),
])
def test_what_the_evaluator_leaves_to_sympy(a, reason):
    with pytest.raises(NeedsSympy):
        numeric_equal(a, "1")


def test_a_tower_is_refused_as_too_large_not_left_to_sympy():
    with pytest.raises(TooLarge):
        numeric_equal("9**9**9", "1")
    with pytest.raises(NeedsSympy):  # 10^400 is past floats but small enough for sympy
        numeric_equal("10**400", "1")
    assert answers_match("10^{400}", "100^{200}")  # decided by sympy instead


@pytest.mark.parametrize("latex, text", [
    ("\\sin^2 x + \\cos^2 x", "((sin(x))**(2)) + ((cos(x))**(2))"),
    ("\\log_2 8", "((log(8)/log(2)))"),
    ("2\\cos^2x-1", "2((cos(x))**(2))-1"),  # the power takes one character: ^2 then x
    ("\\ln 3^2", "(log(3^2))"),  # a power after the argument belongs to it
    ("\\sin\\frac{\\pi}{6}", "(sin(((pi)/(6))))"),
])
def test_latex_functions_become_calls(latex, text):
    assert latex_to_text(latex) == text


@pytest.mark.parametrize("raw, clean", [
    ("\\mathbf{\\frac{9}{4}}", "\\frac{9}{4}"), ("\\left.\\frac{9}{4}\\right.", "\\frac{9}{4}"),
    ("\\frac {9} {4}", "\\frac{9}{4}"), ("\\frac12", "\\frac{1}{2}"), ("−5", "-5"),
    ("1{,}000", "1000"), ("1,\\!000", "1000"), ("48\\text{ cm}^2", "48"),
    ("\\text{48 dollars}", "48"), ("{-5}", "-5"), ("(-5)", "-5"), ("=936", "936"),
    ("6xy", "6xy"),  # a product, not 6 with a unit
    ("15min", "15"), ("x = 2 \\text{ or } x = -3", "x = 2,x = -3"),
])
def test_normalise(raw, clean):
    assert normalise(raw) == clean


@pytest.mark.parametrize("completion, answer", [
    ("Final Answer: The final answer is $42$. I hope it is correct.", "42"),
    ("**Answer:** $\\$48$", "\\$48"),  # an escaped dollar is money, not a delimiter
    ("the amount left is \\mathbf{\\frac{9}{4}} in total.", "\\mathbf{\\frac{9}{4}}"),
    ("The total is 3 \\times 5 = 15 dollars.", "3 \\times 5 = 15"),
    ("The answer is 7.5", "7.5"), ("Final answer: .25", ".25"),
    ("\\left[\\begin{array}{cc}1&2\\\\3&4\\end{array}\\right]",
     "\\left[\\begin{array}{cc}1&2\\\\3&4\\end{array}\\right]"),
    ("The code is AB3CD.", None), ("x3y", None),  # letters glued to a digit are no answer
    ("To answer: we factor.\nSo $x = 5$.", "x = 5"), ("The answer is: even.", "even"),
])
def test_extraction_of_real_answer_styles(completion, answer):
    assert extract_answer(completion) == answer


def test_math_blocks_in_order_and_unclosed_delimiters():
    assert math_blocks("a $1$ b \\(2\\) c $$3$$ d \\[4\\]") == ["1", "2", "3", "4"]
    assert math_blocks("costs \\$5 and $x$") == ["x"]
    assert math_blocks("\\(" * 1000 + "$y$") == ["y"]


@pytest.mark.parametrize("pred, gold, equal", [
    ("x \\geq 3", "[3,\\infty)", True), ("-2 < x \\le 5", "(-2,5]", True),
    ("-2 < x < 5", "(-2,5]", False), ("2x<6", "x<3", True),  # relations stay relations
    ("(x,y)=(2,-1)", "(2,-1)", True), ("\\frac{1}{3} \\approx 0.333", "\\frac{1}{3}", True),
    ("\\arctan 1", "\\frac{\\pi}{4}", True), ("1.2.3", "0.36", False),
    ("p \\approx 0.33", "\\frac{1}{3}", False), ("2+2=5", "4", False), ("a+3z=0", "0", False),
    ("\\left[\\begin{array}{cc}1&2\\\\3&4\\end{array}\\right]",
     "\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}", True),
])
def test_structured_answers(pred, gold, equal):
    assert answers_match(pred, gold) is equal
