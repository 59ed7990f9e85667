"""Turning a final answer (LaTeX or plain text) into something sympy can compare.

`normalise` removes what the MATH graders ignore (spacing commands, \\text{}, units, degree
signs, dollar signs, trailing periods); `to_sympy` parses one expression; `split_top_level`
finds the parts of tuples, sets and lists without splitting inside brackets.
"""
from __future__ import annotations

import re
from functools import lru_cache
from typing import Optional

import sympy
from sympy.parsing.sympy_parser import (
    convert_xor,
    implicit_multiplication_application,
    parse_expr,
    standard_transformations,
)

MAX_ANSWER_CHARS = 400  # longer "answers" are not answers; refusing them keeps checks fast
_TRANSFORMS = standard_transformations + (implicit_multiplication_application, convert_xor)
_NAMES = {
    "pi": sympy.pi,
    "e": sympy.E,
    "oo": sympy.oo,
    "sqrt": sympy.sqrt,
    "ln": sympy.log,
    "log": sympy.log,
}
_UNIT_WORDS = (
    "degrees", "degree", "deg", "cm", "mm", "km", "m", "meters", "meter", "inches", "inch", "feet",
    "foot", "ft", "units", "unit", "sq", "square", "cubic", "hours", "hour", "minutes", "minute",
    "seconds", "second", "days", "day", "dollars", "dollar", "cents", "cent", "percent", "mph",
    "miles", "mile", "pounds", "grams", "kg", "g",
)
_UNITS = re.compile(
    r"(?<=[\d\s}])\s*(?:\\(?:mbox|text|textbf|mathrm)\{\s*)?(?:%s)\b\}?\.?(?:\^\{?[23]\}?)?\s*$"
    % "|".join(_UNIT_WORDS)
)


class Unparseable(ValueError):
    """The text is not an expression this checker understands."""


def strip_text_commands(s: str) -> str:
    return re.sub(r"\\(?:text|textbf|mbox|mathrm|mathbf|textit|operatorname)\{([^{}]*)\}", r"\1", s)


@lru_cache(maxsize=8192)  # GRPO checks each gold G times: parse it once
def normalise(answer: str) -> str:
    s = answer.strip()
    s = re.sub(r"^\$+|\$+$", "", s).strip()
    s = re.sub(r"^\\\[|\\\]$|^\\\(|\\\)$", "", s).strip()
    s = _UNITS.sub("", s)
    s = strip_text_commands(s)
    s = re.sub(r"\\(?:left|right|big|Big|bigg|Bigg)(?![a-zA-Z])", "", s)
    s = re.sub(r"(?<!\\)\\(?:!|,|;|:| |quad|qquad)", "", s).replace("~", "")  # not the \\ row break
    s = (
        s.replace("\\dfrac", "\\frac")
        .replace("\\tfrac", "\\frac")
        .replace("\\$", "")
        .replace("$", "")
    )
    s = re.sub(r"\^\{?\\circ\}?|°", "", s)
    s = s.replace("\\displaystyle", "")
    s = re.sub(r"^[a-zA-Z]\s*\\in\s*", "", s)  # 'x \in [1, 2]' is the interval
    s = re.sub(r"\s+", " ", s).strip().rstrip(".").strip()
    s = re.sub(r"\s+(?:and|or)\s+", ",", s)  # '2 and 3' is the list 2, 3
    words_after_number = re.fullmatch(r"(-?[\d.,]*\d)\s+[A-Za-z]{2,}[A-Za-z ]*", s)
    if words_after_number:  # '6 square units', '5 apples': the words are units
        s = words_after_number.group(1)
    if s.count("\\pm") == 1:  # 'a \pm b' is the two answers a + b and a - b
        s = s.replace("\\pm", "+") + "," + s.replace("\\pm", "-")
    if re.fullmatch(r"-?\d{1,3}(,\d{3})+(\.\d+)?", s):  # 1,000 is one thousand, not a list
        s = s.replace(",", "")
    return s


def _braced(s: str, i: int) -> tuple[str, int]:
    """The {...} group starting at s[i] == '{' and the index after it."""
    depth = 0
    for j in range(i, len(s)):
        depth += s[j] == "{"
        depth -= s[j] == "}"
        if depth == 0:
            return s[i + 1 : j], j + 1
    raise Unparseable("unbalanced braces")


def _replace_command(s: str, name: str, arity: int, render) -> str:
    out, i = [], 0
    while (k := s.find(name, i)) >= 0:
        out.append(s[i:k])
        j = k + len(name)
        option = None
        if name == "\\sqrt" and j < len(s) and s[j] == "[":
            end = s.index("]", j)
            option, j = s[j + 1 : end], end + 1
        args = []
        for _ in range(arity):
            if j < len(s) and s[j] == "{":
                arg, j = _braced(s, j)
            elif j < len(s):  # \frac12 style: single characters
                arg, j = s[j], j + 1
            else:
                raise Unparseable(f"{name} without its argument")
            args.append(latex_to_text(arg))
        out.append(render(*args, option=option))
        i = j
    out.append(s[i:])
    return "".join(out)


def latex_to_text(s: str) -> str:
    """LaTeX math -> sympy's parse_expr syntax."""
    s = _replace_command(s, "\\frac", 2, lambda a, b, option: f"(({a})/({b}))")
    s = _replace_command(s, "\\sqrt", 1, lambda a,
                         option: f"(({a})**(1/({option})))" if option else f"sqrt({a})")
    for latex, text in (("\\cdot", "*"), ("\\times", "*"), ("\\div", "/"), ("\\pi", "pi"),
                        ("\\infty", "oo"),
                        ("\\ln", "ln"), ("\\log", "log"), ("\\exp", "exp"), ("\\sin", "sin"),
                        ("\\cos", "cos"), ("\\tan", "tan"), ("{", "("), ("}", ")"), ("\\", "")):
        s = s.replace(latex, text)
    return s


def _guard(text: str) -> None:
    """Refuse what would make sympy compute for a very long time."""
    if len(text) > MAX_ANSWER_CHARS:
        raise Unparseable(f"answer longer than {MAX_ANSWER_CHARS} characters")
    if len(re.findall(r"\*\*|\^", text)) > 3 or re.search(r"(\*\*|\^)\s*[({]?\s*\d{4,}", text):
        raise Unparseable("exponent tower or huge exponent")
    if re.search(r"\d{3,}\s*!|factorial", text):
        raise Unparseable("huge factorial")
    if max((len(d) for d in re.findall(r"\d+", text)), default=0) > 200:
        raise Unparseable("number with more than 200 digits")
    depth = max_depth = 0
    for ch in text:
        depth += ch in "({["
        depth -= ch in ")}]"
        max_depth = max(max_depth, depth)
    if max_depth > 20:
        raise Unparseable("brackets nested more than 20 deep")


@lru_cache(maxsize=8192)
def to_sympy(answer: str) -> sympy.Expr:
    """One expression (no relation, no list) as a sympy object."""
    _guard(answer)
    text = latex_to_text(answer)
    text = re.sub(r"(\d)\s*%$", r"\1/100", text)
    try:
        return parse_expr(text, local_dict=dict(_NAMES), transformations=_TRANSFORMS, evaluate=True)
    except Exception as exc:  # parse_expr raises many types
        raise Unparseable(f"cannot parse {answer!r}: {type(exc).__name__}") from None


def split_top_level(s: str, sep: str = ",") -> list[str]:
    """Split on `sep` outside (), [], {} and \\{ \\}."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(s):
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == sep and depth == 0:
            parts.append(s[start:i].strip())
            start = i + 1
    parts.append(s[start:].strip())
    return parts


def choice_letter(s: str) -> Optional[str]:
    """'(C)', 'C', '\\text{(C)}' -> 'C'; None when the answer is not a multiple-choice letter."""
    m = re.fullmatch(r"\(?\s*([A-E])\s*\)?", strip_text_commands(s).strip())
    return m.group(1) if m else None
