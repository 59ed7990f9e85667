"""How models write a final answer: each style wraps an answer into a whole completion.

The styles follow what public graders are built to read: the MATH solutions' `\\boxed{}`,
Qwen2.5-Math's "**Final Answer**" display, the Minerva prompt's "Final Answer: The final
answer is $X$. I hope it is correct.", GSM8K's "#### X", "The answer is X" (DeepSeek-Math,
lm-evaluation-harness), inline `\\( \\)` math, bold "**Answer:**" lines, a sentence with words
around a number, the built-in arithmetic task's "=X", and the bare answer alone.

Preambles carry numbers of their own, so that a checker that grabs any number is caught out.
"""
from __future__ import annotations

import re

_PLAIN_NUMBER = re.compile(r"[−-]?\d[\d,]*(\.\d+)?")


def _is_plain_number(answer: str) -> bool:
    return bool(_PLAIN_NUMBER.fullmatch(answer))


def _reads_in_a_sentence(answer: str) -> bool:
    """A single value with no variables (a number, fraction, root, constant, with or without
    units): what a sentence states with words around it."""
    if len(answer) > 40 or re.search(r"\\begin|=|\\cup|^[(\[]|^\\\{|,.*,", answer):
        return False
    return not re.search(r"[a-zA-Z]", re.sub(r"\\text\w*\{[^}]*\}|\\[a-zA-Z]+", "", answer))


# name -> (applies to this answer?, completion template with {a} for the answer)
STYLES = {
    "boxed": (lambda a: True,
              "First, 3 + 4 = 7 and 2 \\cdot 5 = 10.\nPutting these together gives "
              "$\\boxed{{{a}}}$."),
    "qwen_final": (lambda a: True,
                   "Let's solve this step by step.\nStep 1: there are 12 cases.\nStep 2: two "
                   "of them repeat.\n\n**Final Answer**\n\\[\n\\boxed{{{a}}}\n\\]"),
    "minerva": (lambda a: True,
                "We have $2x = 14$ from the first equation, so the rest follows.\n"
                "Final Answer: The final answer is ${a}$. I hope it is correct."),
    "answer_is_dollar": (lambda a: True,
                         "Substituting 5 for the unknown checks out. Therefore, the answer is "
                         "${a}$."),
    "answer_is_plain": (lambda a: "\\begin" not in a,
                        "Adding 18 and 6 first, then dividing by 3, the answer is {a}."),
    "inline_paren": (lambda a: True,
                     "Combining both cases (there are 2 of them), the result is \\({a}\\)."),
    "final_colon": (lambda a: "\\begin" not in a,
                    "Checking with 4 examples confirms the pattern.\nFinal answer: {a}"),
    "bold_answer": (lambda a: True, "We expand and collect 3 terms.\n\n**Answer:** ${a}$"),
    "bare": (lambda a: True, "{a}"),
    "gsm8k": (_is_plain_number,
              "She buys 3 packs of 4 for 2 dollars each, so 3 * 2 = 6 dollars.\n#### {a}"),
    "sentence": (_reads_in_a_sentence,
                 "After the 2 transfers and 1 refund, the amount left is {a} in total."),
    "equals": (_is_plain_number, "={a}"),
}


def completions_for(answer: str, count: int, start: int) -> list[tuple[str, str]]:
    """`count` (style, completion) pairs for an answer, rotating through the styles that apply
    from position `start` so that every style gets its share across the corpus."""
    names = [name for name, (applies, _) in STYLES.items() if applies(answer)]
    chosen = [names[(start + k) % len(names)] for k in range(min(count, len(names)))]
    return [(name, STYLES[name][1].format(a=answer)) for name in chosen]
