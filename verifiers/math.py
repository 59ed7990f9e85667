"""Math answer checking: extract the final answer of a completion and compare it with sympy.

Conventions follow the MATH benchmark's graders: the last boxed answer counts; units,
\\text{}, degree and dollar signs are ignored; a percentage equals its number and its
fraction; numbers are equal within a relative tolerance of 1e-6 (0.33 is not 1/3); `x=3`
equals `3`; equations equal after rearranging and scaling, inequalities as relations;
intervals by endpoints and brackets; sets and bare lists order-free, tuples ordered;
matrices elementwise; multiple-choice letters by letter.

Fast paths (identical text, two plain numbers) run in the caller. Anything that needs
sympy runs in a worker process bounded by a time limit (verifiers/pool.py), so no answer
can hang the caller, whichever thread or process it is in.
"""
from __future__ import annotations

import os
import re
import threading
from itertools import permutations
from typing import Optional, Sequence

import sympy

from verifiers import pool as _pool
from verifiers.math_extract import extract_answer, last_boxed
from verifiers.math_numeric import NeedsSympy, numeric_equal
from verifiers.math_parse import (
    MAX_ANSWER_CHARS,
    PROBES,
    RELATIONS,
    Unparseable,
    as_interval,
    choice_letter,
    equation_value,
    latex_to_text,
    normalise,
    split_top_level,
    stated_values,
    to_sympy,
)
from verifiers.registry import Flagged

MAX_DIGITS = 400  # plain numbers longer than this are refused by the fast path
RELATIVE_TOLERANCE = 1e-6
DEFAULT_TIMEOUT_S = 2.0



# ------------------------------------------------------------ fast paths ----
def _rational(text: str) -> Optional[sympy.Rational]:
    """Plain numbers only: 12, -0.5, 3e5, 7/8, \\frac{7}{8}. No evaluation of expressions."""
    if sum(ch.isdigit() for ch in text) > MAX_DIGITS:
        return None
    # 2\frac{1}{2} is two and a half
    mixed = re.fullmatch(r"(-?)(\d+)\\frac\{(\d+)\}\{(\d+)\}", text)
    if mixed and int(mixed.group(4)) != 0:
        value = int(mixed.group(2)) + sympy.Rational(int(mixed.group(3)), int(mixed.group(4)))
        return -value if mixed.group(1) else value
    frac = re.fullmatch(r"(-?)\\frac\{(-?[\d.]+)\}\{(-?[\d.]+)\}", text) or re.fullmatch(
        r"(-?)\(?(-?[\d.]+)\)?/\(?(-?[\d.]+)\)?", text
    )
    if frac:
        sign, num, den = frac.groups()
        a, b = _rational(num), _rational(den)
        if a is None or b is None or b == 0:
            return None
        return -(a / b) if sign else a / b
    if re.fullmatch(r"-?(\d+\.?\d*|\.\d+)([eE][-+]?\d{1,4})?", text):
        return sympy.Rational(text)  # exact: Rational("0.1") == 1/10
    return None


def _close(a, b) -> bool:
    return a == b or abs(a - b) <= RELATIVE_TOLERANCE * max(abs(a), abs(b))


def _percent_variants(s: str) -> list[str]:
    """'25\\%' also stands for '25' and for the fraction 25/100."""
    m = re.fullmatch(r"(.+?)\s*\\?%", s)
    if not m:
        return [s]
    return [m.group(1), f"({m.group(1)})/100"]


# ----------------------------------------------------- structured compare ----
_PROBES = tuple(sympy.Rational(numerator, denominator) for numerator, denominator in PROBES)


def _at_probes(expr: sympy.Expr) -> list:
    """Values of expr with every symbol set to each probe point (different per symbol)."""
    symbols = sorted(expr.free_symbols, key=str)
    values = []
    for k, probe in enumerate(_PROBES):
        point = {s: probe + sympy.Rational(i * (k + 2), 3) for i, s in enumerate(symbols)}
        values.append(sympy.N(expr.subs(point), 30))
    return values


def _is_zero_everywhere(diff: sympy.Expr) -> bool:
    """expand first (exact, cheap); otherwise evaluation at probe points, which decides in
    microseconds what simplify() decides in tens of milliseconds."""
    if sympy.expand(diff) == 0:
        return True
    return all(v.is_finite is not False and abs(v) <= 1e-9 for v in _at_probes(diff))


def _expr_equal(a: str, b: str) -> bool:
    try:
        return numeric_equal(latex_to_text(a), latex_to_text(b))
    except NeedsSympy:
        if _CALLER.numeric_only:
            raise
    ea, eb = to_sympy(a), to_sympy(b)
    if ea.free_symbols or eb.free_symbols:
        return _is_zero_everywhere(ea - eb)
    va, vb = sympy.N(ea, 30), sympy.N(eb, 30)
    if not (va.is_finite and vb.is_finite):
        return ea == eb
    if va.is_real and vb.is_real:
        return _close(va, vb)
    return abs(va - vb) <= RELATIVE_TOLERANCE * max(abs(va), abs(vb))


def _relation(s: str) -> Optional[tuple[str, str, str]]:
    for latex, op in RELATIONS:
        s = s.replace(latex, op)
    m = re.fullmatch(r"([^<>=!]+?)\s*(<=|>=|!=|=|<|>)\s*([^<>=!]+)", s)
    return (m.group(1), m.group(2), m.group(3)) if m else None


def _relations_equal(r1, r2) -> bool:
    """Same relation after rearranging and scaling: a op b  ->  (a - b) op 0, up to a factor."""
    if _CALLER.numeric_only:
        raise NeedsSympy("relations are compared with sympy")
    flip = {"<": ">", "<=": ">="}
    (l1, o1, r1_), (l2, o2, r2_) = r1, r2
    d1 = to_sympy(l1) - to_sympy(r1_)
    d2 = to_sympy(l2) - to_sympy(r2_)
    if o1 in flip:
        o1, d1 = flip[o1], -d1
    if o2 in flip:
        o2, d2 = flip[o2], -d2
    if o1 != o2 or sympy.expand(d2) == 0:
        return False
    ratios = _at_probes(d1 / d2) if (d1.free_symbols or d2.free_symbols) else [sympy.N(d1 / d2, 30)]
    first = ratios[0]
    if not first.is_finite or abs(first) < 1e-12:
        return False
    if not all(abs(r - first) <= 1e-9 * abs(first) for r in ratios):
        return False  # not a constant multiple of each other
    return bool(first > 0) if o1 in (">", ">=") else True  # equations may scale by any non-zero


_MATRIX = re.compile(
    r"[\[(]?\s*\\begin\{(?:[pbvBV]?matrix|array)\}(?:\{[lcr|]*\})?(.*)"
    r"\\end\{(?:[pbvBV]?matrix|array)\}\s*[\])]?", flags=re.S
)


def _matrix_rows(s: str) -> Optional[list[list[str]]]:
    """pmatrix, bmatrix, ... or an array inside brackets: the rows of cells."""
    m = _MATRIX.fullmatch(s)
    if not m:
        return None
    return [[c.strip() for c in row.split("&")] for row in re.split(r"\\\\",
                                                                    m.group(1)) if row.strip()]


def _brackets(s: str) -> Optional[tuple[str, list[str], str]]:
    """'(a, b]' -> ('(', ['a', 'b'], ']') for tuples and intervals; None if not bracketed."""
    if len(s) >= 2 and s[0] in "([" and s[-1] in ")]" and "," in s and _encloses(s):
        parts = split_top_level(s[1:-1])
        if len(parts) >= 2:
            return s[0], parts, s[-1]
    return None


def _encloses(s: str) -> bool:
    """The first bracket closes at the last character: '(1, 2]' yes, '(x,y)=(2,-1)' no."""
    depth = 0
    for i, ch in enumerate(s):
        depth += ch in "([{"
        depth -= ch in ")]}"
        if depth == 0:
            return i == len(s) - 1
    return False


def _same_multiset(xs: Sequence[str], ys: Sequence[str]) -> bool:
    if len(xs) != len(ys):
        return False
    if len(xs) > 6:  # no factorial blow-up: sorted pairing of canonical text, then exact check
        return all(answers_match(x, y) for x, y in zip(sorted(xs), sorted(ys)))
    return any(all(answers_match(x, y) for x, y in zip(xs, perm)) for perm in permutations(ys))


def _structured_equal(p: str, g: str) -> bool:
    rel_p, rel_g = _relation(p), _relation(g)
    if not (rel_p and rel_g) and (as_interval(p) or as_interval(g)):
        # 'x >= 3' against '[3, \\infty)'; two inequalities compare as relations
        return answers_match(as_interval(p) or p, as_interval(g) or g)
    values = stated_values(p) if len(split_top_level(p)) == 1 and not rel_g else []
    if values:  # 'x = 3', '3 + 4 = 7', '(x, y) = (2, -1)', '\\frac{1}{3} \\approx 0.333'
        return any(answers_match(value, g) for value in values)
    if "\\cup" in g or "\\cup" in p:
        return _same_multiset(p.split("\\cup"), g.split("\\cup"))
    rows_p, rows_g = _matrix_rows(p), _matrix_rows(g)
    if rows_g is not None or rows_p is not None:
        return (rows_p is not None and rows_g is not None and len(rows_p) == len(rows_g)
                and all(len(a) == len(b) and all(answers_match(x, y) for x, y in zip(a, b))
                        for a, b in zip(rows_p, rows_g)))
    set_p = re.fullmatch(r"\\\{(.*)\\\}", p)
    set_g = re.fullmatch(r"\\\{(.*)\\\}", g)
    if set_p or set_g:
        items = lambda m, s: split_top_level(m.group(1)) if m else split_top_level(s)  # noqa: E731
        return _same_multiset(items(set_p, p), items(set_g, g))
    br_p, br_g = _brackets(p), _brackets(g)
    if br_p or br_g:
        return (br_p is not None and br_g is not None and br_p[0] == br_g[0] and br_p[2] == br_g[2]
                and len(br_p[1]) == len(br_g[1]) and all(answers_match(x, y) for x,
                                                         y in zip(br_p[1], br_g[1])))
    parts_p, parts_g = split_top_level(p), split_top_level(g)
    if len(parts_p) > 1 or len(parts_g) > 1:  # a bare list of answers: order-free
        return _same_multiset(parts_p, parts_g)
    if rel_p and rel_g:
        return _relations_equal(rel_p, rel_g)
    if rel_g:  # '3' against 'x = 3'
        value = equation_value(rel_g)
        return value is not None and answers_match(p, value)
    if rel_p:  # an equation in unknowns states no value: 'a + 3z = 0' is not '0'
        return False
    return _expr_equal(p, g)


def answers_match(predicted: str, gold: str) -> bool:
    """Equivalence of two final answers (unbounded: call through verify_math for a time limit)."""
    for p in _percent_variants(normalise(predicted)):
        for g in _percent_variants(normalise(gold)):
            decided = _fast_decision(p, g)
            if decided is None:
                try:
                    decided = _structured_equal(p, g)
                except NeedsSympy:
                    raise
                except (Unparseable, TypeError, ValueError, AttributeError, ZeroDivisionError):
                    decided = False
            if decided:
                return True
    return False


# --------------------------------------------------------------- bounded ----
_POOL: Optional[_pool.WorkerPool] = None
_POOL_OWNER = -1


def _fast_decision(p: str, g: str) -> Optional[bool]:
    """True/False when no sympy is needed, None otherwise."""
    if len(p) > 4 * MAX_ANSWER_CHARS:  # no final answer is this long: refuse before any parsing
        return False
    p, g = normalise(p), normalise(g)
    if not p or not g:
        return False
    if p == g:
        return True
    a, b = _rational(p.replace(" ", "")), _rational(g.replace(" ", ""))
    if a is not None and b is not None:
        return bool(_close(a, b))
    if choice_letter(g) is not None:
        return choice_letter(p) == choice_letter(g)
    if re.fullmatch(r"[A-Za-z][A-Za-z ]+", g) and re.fullmatch(r"[A-Za-z][A-Za-z ]+", p):
        return p.lower() == g.lower()  # word answers ('even', 'no solution'): case does not matter
    return None


def reset() -> None:
    """Forget cached parses and stop the bounded-check worker (benchmarks start cold with it)."""
    global _POOL
    normalise.cache_clear()
    to_sympy.cache_clear()
    if _POOL is not None:
        _POOL.close()
        _POOL = None


# Answers made only of numbers, brackets, separators, arithmetic and a few commands cannot make
# sympy work long (no powers, factorials, roots or symbols), so they skip the worker round trip.
_CHEAP_TOKENS = re.compile(
    r"[\d\s.,+\-*/(){}\[\]<>=%]|\\(?:frac|infty|cup|\{|\}|pi|le|ge|leq|geq)(?![a-zA-Z])"
)


def _cheap(s: str) -> bool:
    return len(s) <= 200 and "**" not in s and _CHEAP_TOKENS.sub("", s) == ""


class _CallerMode(threading.local):
    numeric_only = False  # True: decide without sympy or raise NeedsSympy (per thread)


_CALLER = _CallerMode()


def _numeric_only_match(predicted: str, gold: str) -> bool:
    """answers_match with floating-point evaluation only (verifiers/math_numeric.py), which is
    bounded by construction and so may run in the caller. Raises NeedsSympy otherwise."""
    _CALLER.numeric_only = True
    try:
        return answers_match(predicted, gold)
    finally:
        _CALLER.numeric_only = False


def bounded_match(predicted: str, gold: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> bool:
    """answers_match within timeout_s. Raises TimeoutError (or RuntimeError for a crash)."""
    decided = _fast_decision(predicted, gold)
    if decided is not None:
        return decided
    if _pool.IN_WORKER or (_cheap(normalise(predicted)) and _cheap(normalise(gold))):
        return answers_match(predicted, gold)  # bounded already: by the worker, or by construction
    try:
        return _numeric_only_match(predicted, gold)
    except NeedsSympy:
        pass
    global _POOL, _POOL_OWNER
    if _POOL is None or _POOL_OWNER != os.getpid() or _POOL.timeout_s != timeout_s:
        _POOL = _pool.WorkerPool([answers_match], num_workers=1, timeout_s=timeout_s)
        _POOL_OWNER = os.getpid()
    outcome = _POOL.run([(0, (predicted, gold))])[0]
    if outcome.error is not None:
        raise (TimeoutError if "timed out" in outcome.error else RuntimeError)(
            outcome.error.splitlines()[0]
        )
    return bool(outcome.value)


# Arithmetic on literal numbers, as a question writes it: digits, operators, brackets, spaces.
_LITERAL_ARITHMETIC = re.compile(r"[\d\s.+\-*/^()]+")
_OPERATION = re.compile(r"\d\)?\s*[-+*/^]\s*\(?-?\.?\d")  # one number operated on another
_LATEX_OPERATORS = {"\\times": "*", "\\cdot": "*", "\\div": "/", "×": "*", "÷": "/"}


def restates_the_question(answer: str, prompt: str) -> bool:
    """The answer is arithmetic on literal numbers copied from the prompt ("22-99" for the
    prompt "22-99="): the question, not its value, whatever it evaluates to. A chat model that
    restates the problem would otherwise be scored right, and training would teach it to echo.
    A plain number (7/8 included) is always an answer, and so is anything with a symbol in it
    (an option such as 2\\sqrt{3} that the prompt lists)."""
    def plain(text: str) -> str:
        for latex, operator in _LATEX_OPERATORS.items():
            text = text.replace(latex, operator)
        return text

    text = plain(answer).strip()
    if (_rational(text) is not None or not _LITERAL_ARITHMETIC.fullmatch(text)
            or not _OPERATION.search(text)):
        return False
    compact = lambda s: re.sub(r"[\s()]", "", s)  # noqa: E731
    return compact(text) in compact(plain(prompt))


def verify_math(completion: str, gold: str, timeout_s: float = DEFAULT_TIMEOUT_S,
                prompt: Optional[str] = None) -> float:
    """1.0 when the completion's final answer equals the gold answer, else 0.0; with the
    `prompt`, an answer that only restates the question's arithmetic scores 0.0 (see
    restates_the_question). A check that runs past timeout_s (or crashes) scores
    Flagged(0.0, reason): the answer is not recognisably right, and the trainer counts and
    records why."""
    gold_answer = last_boxed(gold)
    gold_answer = gold if gold_answer is None else gold_answer
    predicted = extract_answer(completion)
    if predicted is None:
        return 0.0
    if prompt is not None and restates_the_question(predicted, prompt):
        return 0.0
    try:
        return 1.0 if bounded_match(predicted, gold_answer, timeout_s) else 0.0
    except TimeoutError as exc:
        return Flagged(0.0, f"math check timed out: {exc}")
    except RuntimeError as exc:
        return Flagged(0.0, f"math check failed: {exc}")


def math_verifier(
    completions: Sequence[str], references: Sequence[Optional[str]], samples=None, **fields
) -> list[Optional[float]]:
    """Batch verifier: None for samples without a reference (not a math sample). With the
    samples, their prompts: an answer that restates the question scores 0."""
    prompts = [None] * len(completions) if samples is None else [s.prompt for s in samples]
    return [None if ref is None else verify_math(c, ref, prompt=prompt)
            for c, ref, prompt in zip(completions, references, prompts)]


__all__ = ["answers_match", "math_verifier", "bounded_match", "extract_answer", "last_boxed",
           "normalise", "reset", "restates_the_question", "verify_math"]
