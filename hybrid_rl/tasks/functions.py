"""`task=code`'s problems: write a one-line function from input/output examples.

Samples carry trusted test code as their `reference`, and `meta` tells the code verifier how
to assemble and call the program (verifiers/code.py).
"""
from __future__ import annotations

import random

from hybrid_rl.data.samples import DataError

# family -> (how the body is written, how it computes, range of its constant)
FAMILIES = {
    "add": ("x+{k}", lambda x, k: x + k, (1, 20)),
    "sub": ("x-{k}", lambda x, k: x - k, (1, 20)),
    "mul": ("x*{k}", lambda x, k: x * k, (2, 9)),
    "rsub": ("{k}-x", lambda x, k: k - x, (10, 50)),
}
PREFIX = "def f(x):\n    return "


def functions(
    num: int, seed: int, families: str = "add,sub,mul", num_examples: int = 2, num_tests: int = 4,
) -> list[tuple[str, str, str, dict]]:
    """Write `f` from input/output examples:

        # f(12)=19, f(30)=37
        def f(x):
            return            <- the model writes "x+7"

    The hidden rule is one of `families` with a random constant; the tests check `f` at
    `num_tests` other points, so any expression that computes the rule passes ("7+x" too).
    """
    chosen = [f.strip() for f in families.split(",") if f.strip()]
    unknown = sorted(set(chosen) - set(FAMILIES))
    if not chosen or unknown:
        raise DataError("functions generator: unknown families "
                        f"{unknown or families!r}; known: {sorted(FAMILIES)}")
    if num_examples < 1 or num_tests < 1:
        raise DataError("functions generator: need num_examples >= 1 and num_tests >= 1, got "
                        f"{num_examples}, {num_tests}")
    rng = random.Random(seed)
    out = []
    for _ in range(num):
        body, rule, (low, high) = FAMILIES[rng.choice(chosen)]
        k = rng.randint(low, high)
        points = rng.sample(range(0, 40), num_examples + num_tests)
        shown, hidden = points[:num_examples], points[num_examples:]
        problem = "# " + ", ".join(f"f({x})={rule(x, k)}" for x in shown) + "\n" + PREFIX
        tests = "".join(f"assert f({x}) == {rule(x, k)}\n" for x in hidden)
        out.append((problem, tests, body.format(k=k), {"entry_point": "f",
                                                       "program_prefix": PREFIX}))
    return out
