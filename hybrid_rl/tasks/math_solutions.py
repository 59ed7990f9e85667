"""The `boxed` row format: MATH-style solutions whose final answer is the last \\boxed{}."""
from __future__ import annotations

from hybrid_rl.tasks.plain import required_text
from verifiers.math import last_boxed


def boxed_reference(solution: str) -> str:
    boxed = last_boxed(solution)
    if boxed is None:
        raise ValueError("no \\boxed{} answer in the solution")
    return boxed


def boxed_row(row: dict, where: str, prompt_field: str, answer_field: str):
    """(problem, boxed answer, whole solution as the demonstration, meta)."""
    problem = required_text(row, prompt_field, answer_field)
    solution = str(row[answer_field])
    return problem, boxed_reference(solution), solution.strip(), {}
