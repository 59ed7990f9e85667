"""Turning a final answer (LaTeX or plain text) into something sympy can compare.

`normalise` removes what the MATH graders ignore (spacing commands, \\text{}, units, degree
signs, dollar signs, trailing periods); `latex_to_text` rewrites LaTeX (fractions, roots,
functions with powers and bases) into sympy's syntax and `to_sympy` parses one expression;
`split_top_level` finds the parts of tuples, sets and lists without splitting inside brackets;
`stated_values` and `as_interval` read what a relation says ('x = 3' states 3, 'x >= 3' is
[3, oo)).
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

MAX_NESTING = 20  # deeper brackets are refused: no answer nests like this
# Points where expressions in unknowns are compared, as fractions (numerator, denominator):
# arbitrary, no special values. The sympy path and the float evaluator use the same ones.
PROBES = ((7, 5), (-13, 7), (31, 11))
MAX_ANSWER_CHARS = 400  # longer "answers" are not answers; refusing them keeps checks fast
_TRANSFORMS = standard_transformations + (implicit_multiplication_application, convert_xor)
_NAMES = {
    "pi": sympy.pi,
    "e": sympy.E,
    "oo": sympy.oo,
    "sqrt": sympy.sqrt,
    "ln": sympy.log,
    "log": sympy.log,
    "i": sympy.I,  # complex answers write the imaginary unit as i
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


_TEXT_LIKE = ("text", "textbf", "textit", "textrm", "textnormal", "textsf", "texttt", "mbox",
              "hbox", "mathrm", "mathbf", "mathit", "mathsf", "mathtt", "boldsymbol", "bm",
              "operatorname")
_WRAPPER = re.compile(r"\\(?:%s)\s*(?=\{)" % "|".join(_TEXT_LIKE))
# a \text{...} of words right after a value is its unit: '48\text{ cm}^2', '6 \mbox{sq units}'
_UNIT_TEXT = re.compile(
    r"(?<=[\d}.\s])\s*\\(?:%s)\s*\{(?!\s*(?:and|or)\s*\})\s*[A-Za-z][A-Za-z .]*\}"
    r"(?:\^\{?[23]\}?)?" % "|".join(_TEXT_LIKE)
)
_UNICODE = (("−", "-"), ("–", "-"), ("×", "\\times "), ("·", "\\cdot "), ("÷", "\\div "),
            ("≤", "\\le "), ("≥", "\\ge "), ("≈", "\\approx "), ("π", "\\pi "),
            ("∞", "\\infty "), ("√", "\\sqrt"), ("{,}", ","))
# old-style font switches and layout commands that carry no value: {\bf 3}, \displaystyle
_SWITCHES = re.compile(r"\\(?:bf|rm|it|sf|tt|displaystyle|textstyle|mathstrut)(?![a-zA-Z])")

# words after a number are its unit ('5 apples'); glued to it only a known unit of two letters
# or more ('15min'; not '6xy', a product, nor '5m', which may be 5 times m)
_WORDS_AFTER_NUMBER = re.compile(
    r"(-?[\d.,]*\d)(?:\s+[A-Za-z]{2,}[A-Za-z ]*|(?:%s))(?:\^[23])?"
    % "|".join([word for word in _UNIT_WORDS if len(word) > 1] + ["min"])
)


class Unparseable(ValueError):
    """The text is not an expression this checker understands."""


def strip_text_commands(s: str) -> str:
    """\\text{...}, \\mathbf{...} and the other font and text wrappers -> their content
    (nested braces included)."""
    out, i = [], 0
    for match in _WRAPPER.finditer(s):
        if match.start() < i:
            continue  # inside a wrapper already unwrapped
        try:
            content, end = _braced(s, match.end())
        except Unparseable:
            break
        out.append(s[i : match.start()] + strip_text_commands(content))
        i = end
    out.append(s[i:])
    return "".join(out)


def _strip_enclosing_braces(s: str) -> str:
    """'{-5}' -> '-5', '{{x}}' -> 'x': braces that only group the whole answer. One pass: the
    k-th leading brace encloses everything when it closes at the k-th character from the end."""
    lead = len(s) - len(s.lstrip("{"))
    closes_at, stack = {}, []
    for i, ch in enumerate(s):
        if ch == "{":
            stack.append(i)
        elif ch == "}" and stack:
            opened = stack.pop()
            if opened < lead:
                closes_at[opened] = i
    layers = 0
    while layers < lead and closes_at.get(layers) == len(s) - 1 - layers:
        layers += 1
    inner = s[layers : len(s) - layers].strip()
    return _strip_enclosing_braces(inner) if layers and inner.startswith("{") else inner


@lru_cache(maxsize=8192)  # GRPO checks each gold G times: parse it once
def normalise(answer: str) -> str:
    """What the graders ignore, removed: delimiters, units, text and font wrappers, spacing,
    thousands separators, invisible delimiters; Unicode signs written as LaTeX."""
    s = answer.strip()
    s = re.sub(r"^\$+|\$+$", "", s).strip()
    s = re.sub(r"^\\\[|\\\]$|^\\\(|\\\)$", "", s).strip()
    for char, latex in _UNICODE:
        s = s.replace(char, latex)
    s = re.sub(r"\\(?:left|right)[.|](?![a-zA-Z])", "", s)  # invisible delimiters
    s = _UNIT_TEXT.sub("", s)
    s = _UNITS.sub("", strip_text_commands(s))
    s = _SWITCHES.sub("", s)
    s = re.sub(r"\\(?:left|right|big|Big|bigg|Bigg)(?![a-zA-Z])", "", s)
    s = re.sub(r"(?<!\\)\\(?:!|,|;|:| |quad|qquad)", "", s).replace("~", "")  # not \\
    s = (
        s.replace("\\dfrac", "\\frac")
        .replace("\\tfrac", "\\frac")
        .replace("\\cfrac", "\\frac")
        .replace("\\$", "")
        .replace("$", "")
    )
    s = re.sub(r"\\(frac|sqrt)\s+", r"\\\1", s)  # '\frac {9} {4}', '\sqrt 5'
    s = re.sub(r"\\frac(\d)(\d)", r"\\frac{\1}{\2}", s)  # '\frac12'
    s = re.sub(r"(?<!\\)\}\s+\{", "}{", s)
    s = re.sub(r"\s*\^\s*\{?\\circ\}?|°", "", s)
    s = re.sub(r"^[a-zA-Z]\s*\\in\s*", "", s)  # 'x \in [1, 2]' is the interval
    s = re.sub(r"\s+", " ", s).strip().rstrip(".").strip()
    s = _strip_enclosing_braces(re.sub(r"^=\s*", "", s))  # '=936': the arithmetic task's form
    s = re.sub(r"\s+(?:and|or)\s+", ",", s)  # '2 and 3' is the list 2, 3
    words_after_number = _WORDS_AFTER_NUMBER.fullmatch(s)
    if words_after_number:  # '6 square units', '5 apples', '15min': the words are units
        s = words_after_number.group(1)
    if s.count("\\pm") == 1:  # 'a \pm b' is the two answers a + b and a - b
        s = s.replace("\\pm", "+") + "," + s.replace("\\pm", "-")
    if re.fullmatch(r"-?\d{1,3}(,\d{3})+(\.\d+)?", s):  # 1,000 is one thousand, not a list
        s = s.replace(",", "")
    grouped_number = re.fullmatch(r"\((-?[\d.]+)\)", s)  # '(-5)': brackets without a comma
    return grouped_number.group(1) if grouped_number else s


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
                while s[j] == " " and j + 1 < len(s):
                    j += 1
                arg, j = s[j], j + 1
            else:
                raise Unparseable(f"{name} without its argument")
            args.append(latex_to_text(arg))
        out.append(render(*args, option=option))
        i = j
    out.append(s[i:])
    return "".join(out)


_FUNCTIONS = re.compile(
    r"\\(arcsin|arccos|arctan|sinh|cosh|tanh|sin|cos|tan|sec|csc|cot|ln|log|exp)(?![a-zA-Z])"
)


_ARGUMENT_RUN = re.compile(r"\\[a-zA-Z]+|[A-Za-z0-9.]+")
_ONE_ARGUMENT_CHARACTER = re.compile(r"\\[a-zA-Z]+|[A-Za-z0-9.]")
_SYMPY_NAMES = {"ln": "log", "arcsin": "asin", "arccos": "acos", "arctan": "atan"}


def _group(s: str, j: int, single: bool = False) -> tuple[str, int]:
    """The argument starting at s[j]: a {...} or (...) group, a command with its groups, or a
    run of letters, digits and dots (one character when `single`, as after ^ and _); a power
    right after it belongs to it (\\ln 3^2)."""
    while j < len(s) and s[j] == " ":
        j += 1
    if j >= len(s):
        raise Unparseable("function without its argument")
    if s[j] in "({":
        closing = {"(": ")", "{": "}"}[s[j]]
        depth = 0
        for k in range(j, len(s)):
            depth += s[k] == s[j]
            depth -= s[k] == closing
            if depth == 0:
                return s[j + 1 : k], k + 1
        raise Unparseable("unbalanced brackets")
    m = (_ONE_ARGUMENT_CHARACTER if single else _ARGUMENT_RUN).match(s, j)
    if not m:
        raise Unparseable(f"no argument at {s[j:j + 10]!r}")
    end = m.end()
    while end < len(s) and s[end] in "({" and (m.group().startswith("\\") or m.group().isalpha()):
        end = _group(s, end)[1]  # \frac{1}{2}, sqrt(6): the command's own groups
    if end < len(s) and s[end] == "^":
        end = _group(s, end + 1, single=True)[1]
    return s[j:end], end


def _apply_functions(s: str) -> str:
    """'\\sin^2 x' -> '(sin(x))**(2)', '\\log_2 8' -> '(log(8)/log(2))', '\\sin 2x' -> 'sin(2x)'."""
    out, i = [], 0
    while (m := _FUNCTIONS.search(s, i)) is not None:
        out.append(s[i : m.start()])
        name, j = m.group(1), m.end()
        power = base = None
        for mark in "^_^":  # a power and a base in either order: \log_2^3 x, \log^3_2 x
            if j < len(s) and s[j] == mark:
                value, j = _group(s, j + 1, single=True)
                power, base = (value, base) if mark == "^" else (power, value)
        argument, j = _group(s, j)
        argument = _apply_functions(argument)
        name = _SYMPY_NAMES.get(name, name)
        call = f"(log({argument})/log({base}))" if base is not None else f"{name}({argument})"
        out.append(f"(({call})**({power}))" if power is not None else f"({call})")
        i = j
    out.append(s[i:])
    return "".join(out)


def latex_to_text(s: str) -> str:
    """LaTeX math -> sympy's parse_expr syntax."""
    s = _apply_functions(s)
    s = _replace_command(s, "\\frac", 2, lambda a, b, option: f"(({a})/({b}))")
    s = _replace_command(s, "\\sqrt", 1, lambda a,
                         option: f"(({a})**(1/({option})))" if option else f"sqrt({a})")
    for latex, text in (("\\cdot", "*"), ("\\times", "*"), ("\\div", "/"), ("\\pi", "pi"),
                        ("\\infty", "oo"), ("{", "("), ("}", ")"), ("\\", "")):
        s = s.replace(latex, text)
    return s


def _guard(text: str) -> None:
    """Refuse what would make sympy compute for a very long time."""
    if len(text) > MAX_ANSWER_CHARS:
        raise Unparseable(f"answer longer than {MAX_ANSWER_CHARS} characters")
    if len(re.findall(r"\*\*|\^", text)) > 3 or re.search(r"(\*\*|\^)\s*[({]?\s*\d{4,}", text):
        raise Unparseable("exponent tower or huge exponent")
    if re.search(r"\d*\.\d+\.\d", text):
        raise Unparseable("a number with two decimal points")  # sympy would read 1.2.3 as 1.2*.3
    if re.search(r"\d{3,}\s*!|factorial", text):
        raise Unparseable("huge factorial")
    if max((len(d) for d in re.findall(r"\d+", text)), default=0) > 200:
        raise Unparseable("number with more than 200 digits")
    if bracket_depth(text) > MAX_NESTING:
        raise Unparseable(f"brackets nested more than {MAX_NESTING} deep")


def bracket_depth(text: str) -> int:
    """How deep (), [] and {} nest in text."""
    depth = deepest = 0
    for ch in text:
        depth += ch in "({["
        depth -= ch in ")}]"
        deepest = max(deepest, depth)
    return deepest


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


# ------------------------------------------------- relations as answers ----
RELATIONS = (("\\geq", ">="), ("\\ge", ">="), ("\\leq", "<="), ("\\le", "<="), ("\\neq", "!="),
              ("≥", ">="), ("≤", "<="))


def equation_value(rel) -> Optional[str]:
    """'x = 3' -> '3', '(x, y) = (2, -1)' -> '(2, -1)': an unknown (or a tuple of unknowns)
    named on the left; None otherwise."""
    left, op, right = rel
    if op != "=":
        return None
    if re.fullmatch(r"[a-zA-Z]|\(\s*[a-zA-Z](?:\s*,\s*[a-zA-Z])+\s*\)", left.strip()):
        return right
    return None


def stated_values(p: str) -> list[str]:
    """The values a chain states: its last part, and the exact value before a final
    approximation. '3 \\times 5 = 15' -> ['15']; 'x = 2\\sqrt{2} \\approx 2.83' -> ['2.83',
    '2\\sqrt{2}']; [] for an equation in unknowns ('a + 3z = 0' states no value)."""
    pieces = re.split(r"(\\approx|(?<![<>!])=(?!=))", p)
    parts, ops = [part.strip() for part in pieces[::2]], pieces[1::2]
    if len(parts) < 2 or not all(parts):
        return []
    if equation_value((parts[0], "=", parts[1])) is not None:
        parts, ops = parts[1:], ops[1:]  # 'x = ...', '(x, y) = ...': the unknowns named
    elif ops[0] == "=" and re.search(r"[a-zA-Z]", re.sub(r"\\[a-zA-Z]+", "", parts[0])):
        return []
    values = [parts[-1]]
    if ops and ops[-1] == "\\approx":
        values.append(parts[-2])
    return values


_INEQUALITY = re.compile(
    r"(?:([^<>=]+?)\s*(<=|<)\s*)?([a-zA-Z])\s*(?:(<=|<)\s*([^<>=]+))?"
)


def as_interval(rel_text: str) -> Optional[str]:
    """'-2 < x <= 5' -> '(-2,5]', 'x >= 3' -> '[3,\\infty)': an inequality in one unknown
    written as the interval it describes."""
    s = rel_text
    for latex, op in RELATIONS:
        s = s.replace(latex, op)
    if ">" in s:  # read 'a > x > b' right to left
        parts = re.split(r"(>=|>)", s)
        s = "".join({">": "<", ">=": "<="}.get(part, part) for part in reversed(parts))
    m = _INEQUALITY.fullmatch(s.strip())
    if not m or not (m.group(2) or m.group(4)):
        return None
    low, low_op, _, high_op, high = m.groups()
    left = "(" if low_op in (None, "<") else "["
    right = ")" if high_op in (None, "<") else "]"
    low = low.strip() if low else "-\\infty"
    high = high.strip() if high else "\\infty"
    return f"{left}{low},{high}{right}"
