"""`task=math`'s problems: procedural integer arithmetic ("347+589=" -> "936").

Demonstrations can carry a stated share of systematic slips, the way human-written solutions
do: `slip_rate` of the problems that need a carry (addition) or a borrow (subtraction) get the
answer written without it. The gold answer the verifier checks stays right, so supervised
warm-up learns the slip while a verifier-rewarded policy can unlearn it.
"""
from __future__ import annotations

import random

from hybrid_rl.data.samples import DataError


def _number_with_digits(rng: random.Random, digits: int) -> int:
    return rng.randint(0 if digits == 1 else 10 ** (digits - 1), 10**digits - 1)


def _digits(n: int, width: int) -> list[int]:
    """Least significant first, padded with zeros to `width`."""
    return [(n // 10**i) % 10 for i in range(width)]


def sum_without_carry(a: int, b: int) -> int:
    """a + b for non-negative a, b as written by someone who forgets to carry: each column
    writes its sum's last digit, the leftmost column its whole sum (47+85 -> 122, not 132)."""
    width = max(len(str(a)), len(str(b)))
    columns = [x + y for x, y in zip(_digits(a, width), _digits(b, width))]
    value = sum((c % 10) * 10**i for i, c in enumerate(columns[:-1]))
    return value + columns[-1] * 10 ** (width - 1)


def difference_without_borrow(a: int, b: int) -> int:
    """a - b as written by someone who never borrows: each column subtracts the smaller digit
    from the larger (52-17 -> 45, not 35); a negative result is -(b - a) written the same way."""
    if a < b:
        return -difference_without_borrow(b, a)
    width = len(str(a))
    columns = [abs(x - y) for x, y in zip(_digits(a, width), _digits(b, width))]
    return sum(c * 10**i for i, c in enumerate(columns))


def slipped_result(a: int, op: str, b: int) -> int:
    """The answer with the carry or borrow dropped (equal to the right one when none is
    needed). Operands are non-negative, as the generator makes them."""
    if op == "+":
        return sum_without_carry(a, b)
    if op == "-":
        return difference_without_borrow(a, b)
    raise ValueError(f"slips are defined for + and -, not {op!r}")


def arithmetic(
    num: int, seed: int, min_digits: int = 1, max_digits: int = 3, operations: str = "+-",
    slip_rate: float = 0.0,
) -> list[tuple[str, str, str]]:
    """Problems like "347+589=" whose answer is the integer result ("936"); each operand has
    between min_digits and max_digits digits.

    The demonstration is the bare answer: the built-in model learns to answer right after "=".
    With slip_rate > 0, that share of the problems needing a carry or borrow has the slipped
    answer as its demonstration (its gold answer stays right); slips come from a stream of
    their own, so the problems are the same at every slip_rate.
    """
    if not 1 <= min_digits <= max_digits:
        raise DataError(f"arithmetic generator: need 1 <= min_digits <= max_digits, "
                        f"got {min_digits}, {max_digits}")
    bad_ops = set(operations) - set("+-*")
    if not operations or bad_ops:
        raise DataError(f"arithmetic generator: operations must use + - *, got {operations!r}")
    if not 0.0 <= slip_rate <= 1.0:
        raise DataError(f"arithmetic generator: slip_rate must be in [0, 1], got {slip_rate}")
    if slip_rate and "*" in operations:
        raise DataError("arithmetic generator: slip_rate applies to + and - only; "
                        f"operations={operations!r} has *")
    rng, slips = random.Random(seed), random.Random(f"slips-{seed}")
    out = []
    for _ in range(num):
        a, b = (_number_with_digits(rng, rng.randint(min_digits, max_digits)) for _ in range(2))
        op = rng.choice(operations)
        result = {"+": a + b, "-": a - b, "*": a * b}[op]
        demo = result
        if op != "*" and slips.random() < slip_rate:
            demo = slipped_result(a, op, b)
        out.append((f"{a}{op}{b}=", str(result), str(demo)))
    return out
