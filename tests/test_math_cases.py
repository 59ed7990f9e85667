"""The labelled answer pairs: every category of the MATH graders' conventions, with near misses."""
import random
from pathlib import Path

import pytest

from verifiers.math import answers_match

CASES_FILE = Path(__file__).parent / "data" / "math_cases.tsv"


def _file_cases():
    for line in CASES_FILE.read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        gold, pred, label, category = line.split("\t")
        yield pytest.param(gold, pred, label == "1", id=f"{category}:{gold}|{pred}")


def _generated_cases():
    """Number families: exact decimals and long decimals of fractions match, rounded ones and
    off-by-one integers do not."""
    rng = random.Random(7)
    for _ in range(40):
        n = rng.randint(2, 99999)
        yield pytest.param(str(n), f"{n}.0", True, id=f"int:{n}")
        yield pytest.param(str(n), str(n + 1), False, id=f"int-off:{n}")
    for _ in range(40):
        a, b = rng.randint(1, 50), rng.choice([3, 7, 9, 11, 13])
        if a % b == 0:
            a += 1
        yield pytest.param(f"\\frac{{{a}}}{{{b}}}", f"{a / b:.10f}", True, id=f"frac-long:{a}/{b}")
        yield pytest.param(f"\\frac{{{a}}}{{{b}}}", f"{a / b:.2f}", False,
                           id=f"frac-rounded:{a}/{b}")


CASES = list(_file_cases()) + list(_generated_cases())


def test_enough_labelled_cases():
    assert len(CASES) >= 300
    assert sum(1 for c in CASES if not c.values[2]) >= 120  # many near misses


@pytest.mark.parametrize("gold, pred, equivalent", CASES)
def test_labelled_case(gold, pred, equivalent):
    assert answers_match(pred, gold) is equivalent
