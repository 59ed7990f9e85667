"""Deciding `a == b` for expressions by evaluating them in floating point, without sympy.

Most answers that need more than a number comparison are still small expressions: radicals,
fractions of pi, logarithms, polynomials, trigonometric identities. Sympy parses one in about
half a millisecond; this evaluator reads the same text (`latex_to_text`'s output) in tens of
microseconds. Symbols are set to fixed probe points, as the sympy path does, so an identity
holds when both sides agree at every probe.

It is bounded by construction: floats only (a power that overflows raises at once, where
exact integers would compute 9**9**9 for hours), no factorials, input under 400 characters.
So it runs in the caller, with no worker round trip. Anything it does not know (an unknown
function, infinity, a factorial, a name it cannot read the way sympy would) raises
NeedsSympy, and the caller takes the sympy path in a bounded worker instead.
"""
from __future__ import annotations

import cmath
import math
import re
from typing import Callable, Optional

from verifiers.math_parse import MAX_NESTING, PROBES, Unparseable, bracket_depth

RELATIVE_TOLERANCE = 1e-6  # between two numbers (the sympy path's tolerance)
IDENTITY_TOLERANCE = 1e-9  # between two expressions in unknowns, at each probe point
MAX_DIGITS = 10_000  # a power past float range and past this many digits is refused
_PROBES = tuple(numerator / denominator for numerator, denominator in PROBES)


class NeedsSympy(ValueError):
    """The evaluator cannot decide this pair; the sympy path must."""


class TooLarge(Unparseable):
    """A value too large for any exact comparison (the answer is refused, not compared)."""


def _sec(z):
    return 1 / cmath.cos(z)


def _csc(z):
    return 1 / cmath.sin(z)


def _cot(z):
    return cmath.cos(z) / cmath.sin(z)


_FUNCTIONS: dict[str, Callable] = {
    "sqrt": cmath.sqrt, "sin": cmath.sin, "cos": cmath.cos, "tan": cmath.tan, "sec": _sec,
    "csc": _csc, "cot": _cot, "log": cmath.log, "ln": cmath.log, "exp": cmath.exp,
    "sinh": cmath.sinh, "cosh": cmath.cosh, "tanh": cmath.tanh, "asin": cmath.asin,
    "acos": cmath.acos, "atan": cmath.atan,
}
_CONSTANTS = {"pi": cmath.pi, "e": cmath.e, "i": 1j}
_GREEK = {"alpha", "beta", "gamma", "delta", "theta", "phi", "psi", "omega", "lambda", "mu",
          "sigma", "tau", "rho", "epsilon", "varepsilon", "varphi", "eta", "zeta", "nu", "xi",
          "kappa", "chi"}
_TOKEN = re.compile(r"\s*(?:(\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?)|([A-Za-z]+)"
                    r"|(\*\*|[-+*/^(),]))")
_ATOM_START = ("num", "name", "(")


def _tokens(text: str) -> list[tuple[str, str]]:
    out, i = [], 0
    text = text.rstrip()
    while i < len(text):
        m = _TOKEN.match(text, i)
        if not m:
            raise NeedsSympy(f"unknown character {text[i]!r}")
        number, name, op = m.groups()
        out.append(("num", number) if number else ("name", name) if name else (op, op))
        if number and len(out) > 1 and out[-2][0] == "num":
            raise NeedsSympy("two numbers side by side ('1.2.3')")  # sympy's reading decides
        i = m.end()
    return out


class _Parser:
    """Recursive descent over the tokens, evaluating as it goes (one pass per probe point)."""

    def __init__(self, tokens, values: dict[str, complex]):
        self.tokens, self.values, self.i = tokens, values, 0

    def peek(self) -> Optional[str]:
        return self.tokens[self.i][0] if self.i < len(self.tokens) else None

    def take(self, kind: str) -> str:
        if self.peek() != kind:
            raise NeedsSympy(f"expected {kind!r}")
        self.i += 1
        return self.tokens[self.i - 1][1]

    def expression(self) -> complex:
        value = self.term()
        while self.peek() in ("+", "-"):
            sign = self.take(self.peek())
            value = value + self.term() if sign == "+" else value - self.term()
        return value

    def term(self) -> complex:
        value = self.unary()
        while self.peek() in ("*", "/") or self.peek() in _ATOM_START:
            if self.peek() == "/":
                self.take("/")
                value = value / self.unary()
            else:
                if self.peek() == "*":
                    self.take("*")
                value = value * self.unary()
        return value

    def unary(self) -> complex:
        if self.peek() in ("-", "+"):
            sign = self.take(self.peek())
            return -self.unary() if sign == "-" else self.unary()
        return self.power()

    def power(self) -> complex:
        base = self.atom()
        if self.peek() in ("**", "^"):
            self.take(self.peek())
            exponent = self.unary()
            if base == 0 and exponent.real <= 0:
                raise NeedsSympy("0 to a non-positive power")
            try:
                return base ** exponent
            except OverflowError:
                digits = abs(exponent) * math.log10(max(abs(base), 2.0))
                if digits > MAX_DIGITS:  # 9**9**9: no grader compares such numbers exactly
                    raise TooLarge(f"a power with about {digits:.3g} digits") from None
                raise NeedsSympy("a power beyond floating point") from None
        return base

    def atom(self) -> complex:
        kind = self.peek()
        if kind == "num":
            return complex(float(self.take("num")))
        if kind == "(":
            self.take("(")
            value = self.expression()
            self.take(")")
            return value
        if kind == "name":
            return self.name(self.take("name"))
        raise NeedsSympy(f"unexpected {kind!r}")

    def name(self, name: str) -> complex:
        if name in _FUNCTIONS:
            self.take("(")
            argument = self.expression()
            self.take(")")
            return _FUNCTIONS[name](argument)
        if self.peek() == "(":  # f(x): sympy reads an unknown function here
            raise NeedsSympy(f"unknown function {name!r}")
        if name in _CONSTANTS:
            return _CONSTANTS[name]
        if name in self.values:
            return self.values[name]
        raise NeedsSympy(f"name {name!r}")


def _symbols(tokens) -> list[str]:
    names = set()
    for kind, text in tokens:
        if kind != "name" or text in _FUNCTIONS or text in _CONSTANTS:
            continue
        if len(text) > 1 and text not in _GREEK:
            raise NeedsSympy(f"name {text!r}")  # sympy would split it into letters
        names.add(text)
    return sorted(names)


def _evaluate(tokens, values) -> complex:
    parser = _Parser(tokens, values)
    value = parser.expression()
    if parser.peek() is not None:
        raise NeedsSympy("trailing tokens")
    return value


def _close(a: complex, b: complex, tolerance: float, floor: float) -> bool:
    """|a - b| within `tolerance` of the larger magnitude, or of `floor` when both are small."""
    if not (cmath.isfinite(a) and cmath.isfinite(b)):
        raise NeedsSympy("not finite")
    return abs(a - b) <= tolerance * max(abs(a), abs(b), floor)


def numeric_equal(a: str, b: str) -> bool:
    """Whether two expressions (sympy syntax, as latex_to_text writes it) are equal: within
    a relative 1e-6 for numbers, at every probe point for expressions in unknowns. Raises
    NeedsSympy when it cannot tell."""
    if len(a) > 400 or len(b) > 400 or max(bracket_depth(a), bracket_depth(b)) > MAX_NESTING:
        raise NeedsSympy("too long or too deeply nested")
    tokens_a, tokens_b = _tokens(a), _tokens(b)
    symbols = sorted(set(_symbols(tokens_a)) | set(_symbols(tokens_b)))
    try:
        if not symbols:
            return _close(_evaluate(tokens_a, {}), _evaluate(tokens_b, {}), RELATIVE_TOLERANCE, 0.0)
        for k, probe in enumerate(_PROBES):
            point = {s: complex(probe + i * (k + 2) / 3) for i, s in enumerate(symbols)}
            if not _close(_evaluate(tokens_a, point), _evaluate(tokens_b, point),
                          IDENTITY_TOLERANCE, 1.0):
                return False
        return True
    except (NeedsSympy, Unparseable):
        raise
    except (OverflowError, ZeroDivisionError, ValueError, RecursionError) as exc:
        raise NeedsSympy(type(exc).__name__) from None
