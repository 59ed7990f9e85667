"""Finding the final answer in a completion, the way models actually write it.

In order, the first that applies:
1. the last `\\boxed{}` / `\\fbox{}` (MATH, Qwen2.5-Math, DeepSeek-Math);
2. the last final-answer phrase ("The answer is", "Final Answer: The final answer is $X$. I hope
   it is correct.", "**Answer:** X", "Final answer: X"): the first math block after it on its
   line, else the text up to the end of the sentence;
3. GSM8K's "#### X";
4. the last math block: `$...$`, `$$...$$`, `\\(...\\)`, `\\[...\\]`;
5. a completion that is nothing but an expression (`\\frac{1}{4}`, `4.2e-4`, `x^2-x-6`);
6. the last stretch of mathematics in the text that holds a number or a command ("the amount
   left is \\frac{9}{4} in total", "347+589=936").

The last two read the text as tokens: numbers, LaTeX commands, operators and single letters
(variables) make up mathematics; any other word ends it. So `abc3def` holds no answer at all,
where picking "the last number" would find a 3 that no grader accepts.
"""
from __future__ import annotations

import re
from typing import Optional

_BOX_COMMANDS = ("\\boxed", "\\fbox")
_FINAL_PHRASE = re.compile(
    r"answer(?:\s*\*\*)?\s*(?:is\b|:|\*\*\s*:)\s*(?:\*\*)?\s*:?", re.IGNORECASE
)
# opening and closing delimiters of math blocks; the longer "$$" is tried before "$"
_DELIMITERS = (("$$", "$$"), ("\\(", "\\)"), ("\\[", "\\]"), ("$", "$"))
_WORD_ANSWER = re.compile(r"[A-Za-z]+(?: [A-Za-z]+)?")  # 'odd', 'No solution'
_SENTENCE_END = re.compile(r"\.(?=\s|$)")
_TEXT_COMMANDS = r"text|textbf|textit|textrm|textnormal|textsf|mbox|hbox|mathrm|operatorname"
_TOKEN = re.compile(
    r"(?P<text>\\(?:%s)\s*\{[^{}\n]*\})" % _TEXT_COMMANDS
    + r"|(?P<cmd>\\(?:begin|end)\{[a-zA-Z*]+\}(?:\{[lcr|]*\})?|\\[a-zA-Z]+\*?|\\[{}$%,;:! |\\])"
    + r"|(?P<word>\d+(?:\.\d+)?(?:[eE][-+]?\d+)?(?![A-Za-z0-9])|[A-Za-z0-9]+(?:\.\d+)?)"
    + r"|(?P<sym>[-+*/^_=<>()\[\]{}|,.!'~&−×÷·≤≥≈°%√π])"
    + r"|(?P<space>[ \t]+)"
    + r"|(?P<other>[\s\S])"
)
# a number, a variable with an optional coefficient (2x), a coefficient with a product of
# variables (6xy) or a glued unit (15min), or the words that join answers
_MATH_WORD = re.compile(
    r"\d+(?:\.\d+)?(?:[eE][-+]?\d+)?|\d*(?:\.\d+)?[A-Za-z]|\d+[A-Za-z]{2,3}|and|or"
)


def last_boxed(text: str) -> Optional[str]:
    """Content of the last \\boxed{...} or \\fbox{...}, nested braces included."""
    start = max(text.rfind(cmd + "{") for cmd in _BOX_COMMANDS)
    if start < 0:
        return None
    i = text.index("{", start)
    depth = 0
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i + 1 : j]
    return None  # unbalanced: no complete answer


def _find(text: str, delimiter: str, start: int) -> int:
    """Next position of `delimiter` at or after `start`, not escaped (a literal \\$ is money)."""
    k = text.find(delimiter, start)
    while k > 0 and delimiter[0] == "$" and text[k - 1] == "\\":
        k = text.find(delimiter, k + 1)
    return k


def math_blocks(text: str) -> list[str]:
    """Contents of the $...$, $$...$$, \\(...\\) and \\[...\\] blocks, in order. Linear in the
    text: each delimiter's next position is looked up again only once the scan has passed it,
    and a delimiter that never closes is not looked for again."""
    blocks, i = [], 0
    next_at = {opening: -2 for opening, _ in _DELIMITERS}  # -2: not looked up yet, -1: none
    while True:
        best = None
        for opening, closing in _DELIMITERS:
            if next_at[opening] == -2 or 0 <= next_at[opening] < i:
                next_at[opening] = _find(text, opening, i)
            k = next_at[opening]
            if k >= 0 and (best is None or k < best[0]):
                best = (k, opening, closing)
        if best is None:
            return blocks
        k, opening, closing = best
        end = _find(text, closing, k + len(opening))
        if end < 0:
            next_at[opening] = -1  # no closing delimiter anywhere after: none after this either
            i = k + len(opening)
            continue
        if text[k + len(opening) : end].strip():
            blocks.append(text[k + len(opening) : end].strip())
        i = end + len(closing)


def math_runs(text: str) -> list[tuple[str, bool]]:
    """Maximal stretches of mathematics in `text`, each with whether it holds a number or a
    command (a stretch of bare letters, like the article 'a', is no answer)."""
    runs, current, substantive = [], [], False
    for match in _TOKEN.finditer(text):
        kind, token = match.lastgroup, match.group()
        if kind == "word" and not _MATH_WORD.fullmatch(token) or kind == "other":
            if current:
                runs.append(("".join(current), substantive))
            current, substantive = [], False
            continue
        current.append(token)
        holds_number = kind == "word" and token[0].isdigit()
        is_value = kind == "cmd" and token not in _BOX_COMMANDS  # an unclosed box holds none
        is_text = kind == "text" and token[token.index("{") + 1 : -1].strip() != ""
        substantive = substantive or holds_number or is_value or is_text
    if current:
        runs.append(("".join(current), substantive))
    trimmed = [(_trim(run), substantive) for run, substantive in runs]
    return [(run, substantive) for run, substantive in trimmed if run]


def _trim(run: str) -> str:
    """Drop the sentence's punctuation and connectives around an expression."""
    run = run.strip()
    while True:
        trimmed = re.sub(r"^(?:and|or)\s+|\s+(?:and|or)$|^,|^\.(?!\d)|[,.:]$", "", run).strip()
        if trimmed == run:
            return run
        run = trimmed


def _is_expression(text: str) -> bool:
    """The whole text is one stretch of mathematics: a bare answer."""
    runs = math_runs(text)
    return len(runs) == 1 and runs[0][0] == _trim(text)


def _answer_after_marker(rest: str) -> Optional[str]:
    """What follows "the answer is": its line's first math block, else its sentence."""
    line = next((line for line in rest.split("\n") if line.strip()), None)
    if line is None:
        return None
    blocks = math_blocks(line)
    if blocks:
        return blocks[0]
    sentence = _SENTENCE_END.split(line, maxsplit=1)[0].strip(" *")
    if not re.search(r"[\d\\]", sentence):  # a word answer: 'Tuesday', 'no solution'
        return sentence or None
    runs = math_runs(sentence)
    return runs[0][0] if runs else sentence


def _last_substantive_run(text: str) -> Optional[str]:
    for run, substantive in reversed(math_runs(text)):
        if substantive:
            return run
    return None


def extract_answer(completion: str) -> Optional[str]:
    """The final answer of a completion (see the module docstring for the order), or None
    when nothing in it is answer-like."""
    boxed = last_boxed(completion)
    if boxed is not None:
        return boxed.strip()
    phrases = list(_FINAL_PHRASE.finditer(completion))
    if phrases:
        rest = completion[phrases[-1].end():]
        answer = _answer_after_marker(rest)
        if answer and (re.search(r"[\d\\]", answer) or not math_blocks(rest)):
            return answer  # a word answer, unless mathematics follows ('To answer: ... $5$')
    if "####" in completion:
        answer = _answer_after_marker(completion.rsplit("####", 1)[1])
        if answer:
            return answer
    blocks = math_blocks(completion)
    if blocks:
        return blocks[-1]
    text = completion.strip()
    if text and _is_expression(text):
        return _trim(text)
    if _WORD_ANSWER.fullmatch(text):
        return text
    return _last_substantive_run(text)
