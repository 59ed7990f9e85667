"""The `gsm8k` row format: worked solutions that end in "#### <answer>"."""
from __future__ import annotations

from hybrid_rl.tasks.plain import required_text


def gsm8k_reference(answer: str) -> str:
    """"...reasoning...\\n#### 1,234" -> "1234"."""
    if "####" not in answer:
        raise ValueError("no '####' marker in the answer")
    return answer.rsplit("####", 1)[1].strip().replace(",", "")


def gsm8k_row(row: dict, where: str, prompt_field: str, answer_field: str):
    """(problem, final answer, whole worked solution as the demonstration, meta)."""
    problem = required_text(row, prompt_field, answer_field)
    solution = str(row[answer_field])
    return problem, gsm8k_reference(solution), solution.strip(), {}
