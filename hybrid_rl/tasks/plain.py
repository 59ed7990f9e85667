"""The `plain` row format: a question column and an answer column holding the bare answer."""
from __future__ import annotations


def required_text(row: dict, prompt_field: str, answer_field: str) -> str:
    """The row's problem text; raises ValueError naming a missing or empty field."""
    for name in (prompt_field, answer_field):
        if name not in row or row[name] is None:
            raise ValueError(f"missing field {name!r} (columns: {sorted(row)})")
    problem = row[prompt_field]
    if not isinstance(problem, str) or not problem.strip():
        raise ValueError(f"field {prompt_field!r} must be non-empty text, got {problem!r:.60}")
    return problem


def plain_row(row: dict, where: str, prompt_field: str, answer_field: str):
    """(problem, reference, demonstration, meta): the answer column is the reference."""
    problem = required_text(row, prompt_field, answer_field)
    answer = str(row[answer_field]).strip()
    return problem, answer, answer, {}
