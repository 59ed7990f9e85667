"""`task=math`'s problems: procedural integer arithmetic ("347+589=" -> "936")."""
from __future__ import annotations

import random

from hybrid_rl.data.samples import DataError


def _number_with_digits(rng: random.Random, digits: int) -> int:
    return rng.randint(0 if digits == 1 else 10 ** (digits - 1), 10**digits - 1)


def arithmetic(
    num: int, seed: int, min_digits: int = 1, max_digits: int = 3, operations: str = "+-"
) -> list[tuple[str, str, str]]:
    """Problems like "347+589=" whose answer is the integer result ("936"); each operand has
    between min_digits and max_digits digits.

    The demonstration is the bare answer: the built-in model learns to answer right after "=".
    """
    if not 1 <= min_digits <= max_digits:
        raise DataError(f"arithmetic generator: need 1 <= min_digits <= max_digits, "
                        f"got {min_digits}, {max_digits}")
    bad_ops = set(operations) - set("+-*")
    if not operations or bad_ops:
        raise DataError(f"arithmetic generator: operations must use + - *, got {operations!r}")
    rng = random.Random(seed)
    out = []
    for _ in range(num):
        a, b = (_number_with_digits(rng, rng.randint(min_digits, max_digits)) for _ in range(2))
        op = rng.choice(operations)
        result = {"+": a + b, "-": a - b, "*": a * b}[op]
        out.append((f"{a}{op}{b}=", str(result), str(result)))
    return out
