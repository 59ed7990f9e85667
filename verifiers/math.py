"""Math answer checking: extract the final answer of a completion and compare it with sympy.

This version is exact for integers, decimals, fractions (`a/b`, `\\frac{a}{b}`), scientific
notation and thousands separators; any other answer is compared as normalised text.
Numbers are parsed into sympy Rationals (no evaluation of arbitrary expressions), so no
input can make a check hang; digit strings longer than MAX_DIGITS are refused.
"""
from __future__ import annotations

import re
from typing import Optional, Sequence

import sympy

from verifiers.registry import register_verifier

MAX_DIGITS = 400  # longer numbers are refused: exact arithmetic on them costs unbounded time
RELATIVE_TOLERANCE = 1e-6

_BOX_COMMANDS = ("\\boxed", "\\fbox")
_ANSWER_IS = re.compile(r"answer\s+is\s*:?\s*(.+)", re.IGNORECASE)
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:/\d+)?|-?\.\d+")


def last_boxed(text: str) -> Optional[str]:
    """Content of the last \\boxed{...} or \\fbox{...}, nested braces included."""
    start = max(text.rfind(cmd + "{") for cmd in _BOX_COMMANDS)
    if start < 0:
        return None
    i = text.index("{", start)
    depth = 0
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i + 1 : j]
    return None  # unbalanced: no complete answer


def extract_answer(completion: str) -> Optional[str]:
    """The final answer of a completion: last \\boxed{}, "the answer is ...", "#### ...", else
    the last number. None when nothing answer-like is present."""
    boxed = last_boxed(completion)
    if boxed is not None:
        return boxed.strip()
    matches = list(_ANSWER_IS.finditer(completion))
    if matches:
        answer = matches[-1].group(1).strip().split("\n")[0]
        return re.sub(r"[.\s]+$", "", answer).strip("$ ")
    if "####" in completion:
        return completion.rsplit("####", 1)[1].strip().split("\n")[0].strip()
    numbers = _NUMBER.findall(completion)
    return numbers[-1] if numbers else None


def normalise(answer: str) -> str:
    s = answer.strip().strip("$").strip()
    s = re.sub(r"\\text\{([^{}]*)\}", r"\1", s)
    s = re.sub(r"\\(left|right|!|,|;|:|quad|qquad)", "", s)
    s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    s = re.sub(r"\s+", "", s)
    s = s.rstrip(".")
    if re.fullmatch(r"-?\d{1,3}(,\d{3})+(\.\d+)?", s):  # 1,000 is one thousand
        s = s.replace(",", "")
    return s


def _rational(text: str) -> Optional[sympy.Rational]:
    if sum(ch.isdigit() for ch in text) > MAX_DIGITS:
        return None
    frac = re.fullmatch(r"(-?)\\frac\{(-?[\d.]+)\}\{(-?[\d.]+)\}", text) or re.fullmatch(
        r"(-?)\(?(-?[\d.]+)\)?/\(?(-?[\d.]+)\)?", text
    )
    if frac:
        sign, num, den = frac.groups()
        a, b = _rational(num), _rational(den)
        if a is None or b is None or b == 0:
            return None
        value = a / b
        return -value if sign else value
    if re.fullmatch(r"-?(\d+\.?\d*|\.\d+)([eE][-+]?\d{1,4})?", text):
        return sympy.Rational(text)  # exact: Rational("0.1") == 1/10
    return None


def answers_match(predicted: str, gold: str) -> bool:
    p, g = normalise(predicted), normalise(gold)
    if not p or not g:
        return False
    if p == g:
        return True
    p_val, g_val = _rational(p), _rational(g)
    if p_val is None or g_val is None:
        return False
    if p_val == g_val:
        return True
    return abs(p_val - g_val) <= RELATIVE_TOLERANCE * max(abs(p_val), abs(g_val))


def verify_math(completion: str, gold: str) -> float:
    """1.0 when the completion's final answer equals the gold answer, else 0.0."""
    gold_answer = last_boxed(gold)
    gold_answer = gold if gold_answer is None else gold_answer
    predicted = extract_answer(completion)
    if predicted is None:
        return 0.0
    return 1.0 if answers_match(predicted, gold_answer) else 0.0


@register_verifier("math")
def math_verifier(
    completions: Sequence[str], references: Sequence[Optional[str]], **fields
) -> list[Optional[float]]:
    """Batch verifier: None for samples without a reference (not a math sample)."""
    return [None if ref is None else verify_math(c, ref) for c, ref in zip(completions, references)]
