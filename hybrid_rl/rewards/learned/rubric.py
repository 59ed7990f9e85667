"""Default preference data: the policy's own answers, dressed in several styles, labelled by a
written rubric that stands in for human raters (no human preference set ships offline).

The rubric judges style only, never correctness; checking the answer is the verifier's job,
which is the point of a hybrid reward. It prefers one clearly marked final answer with brief
working, and dislikes rambling, repetition and hedging between several answers. Raters
disagree, so a configurable share of labels is flipped (and marked `flipped`).
"""
from __future__ import annotations

import random
import re
from typing import Sequence

from hybrid_rl.rewards.learned.pairs import PreferencePair

MAX_WORDS = 30  # more words than this is rambling for these short tasks
HEDGES = ("maybe", "perhaps", "possibly", "i think", "not sure", "might be", "could be")
FILLERS = (
    "let me think",
    "well,",
    "basically",
    "to be honest",
    "hmm",
    "okay so",
    "as everyone knows",
)
MARKED = re.compile(r"(?:answer:|####)\s*(-?[\w.]+)|\\boxed\{([^}]*)\}", re.IGNORECASE)
BARE_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
EQUATION = re.compile(r"\d\s*[-+*/]\s*\d+\s*=\s*-?\d")


def final_answers(text: str, style: str) -> list[str]:
    """Every answer the response commits to, in order (repeats included)."""
    if style == "code":  # the expression on the first line, then every further `return`
        lines = [ln.split("#", 1)[0].strip() for ln in text.strip().splitlines()]
        first = [lines[0]] if lines and lines[0] else []
        return first + [ln[len("return "):].strip() for ln in lines[1:] if ln.startswith("return ")]
    marked = [a or b for a, b in MARKED.findall(text)]
    if marked:
        return [m.strip().rstrip(".") for m in marked]
    return [text.strip()] if BARE_NUMBER.fullmatch(text.strip()) else []


def _repeats(text: str, answers: list[str]) -> bool:
    words = text.lower().split()
    tripled = any(words[i] == words[i + 1] == words[i + 2] for i in range(len(words) - 2))
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return tripled or len(lines) != len(set(lines)) or len(answers) != len(set(answers))


def rubric_points(response: str, style: str) -> dict[str, float]:
    """Rule -> points; the rubric's score is their sum (higher is preferred)."""
    text = response.strip()
    if not text:
        return {"empty": -3.0}
    low, words = text.lower(), text.split()
    answers = final_answers(text, style)
    points = {}
    distinct = len(set(answers))
    points["final_answer"] = 1.0 if distinct == 1 else (-1.5 if distinct > 1 else -1.0)
    if any(h in low for h in HEDGES):
        points["hedging"] = -1.0
    if len(words) > MAX_WORDS or any(f in low for f in FILLERS):
        points["rambling"] = -1.0
    if _repeats(text, answers):
        points["repetition"] = -1.0
    clean = all(v > 0 for v in points.values()) and len(words) <= MAX_WORDS // 2
    if clean and (EQUATION.search(text) if style == "answer" else "#" in text):
        points["shown_working"] = 0.5
    return points


def rubric_score(response: str, style: str) -> float:
    return sum(rubric_points(response, style).values())


def preferred_style(response: str, style: str) -> bool:
    """The rubric's top mark: one final answer with brief working and no fault."""
    return "shown_working" in rubric_points(response, style)


# --------------------------------------------------------------- styles ----
_RAMBLE = [
    "Let me think about this carefully.",
    "Well, there are many ways to look at it.", "Basically we just work it out.",
    "To be honest this takes a moment.", "Hmm, okay so we start from the beginning.",
    "As everyone knows, care matters here.",
]


def _nudge(answer: str, rng: random.Random) -> str:
    """A different answer of the same shape (one digit changed, or a trailing 1)."""
    digits = [i for i, ch in enumerate(answer) if ch.isdigit()]
    if not digits:
        return answer + "1"
    i = rng.choice(digits)
    return answer[:i] + str((int(answer[i]) + rng.randint(1, 9)) % 10) + answer[i + 1 :]


def _answer_styles(a: str, expr: str, rng: random.Random) -> list[str]:
    b = _nudge(a, rng)
    ramble = " ".join(rng.sample(_RAMBLE, 4))
    return [
        a,
        f"Answer: {a}",
        f"{expr} = {a}. Answer: {a}",
        f"{expr} = {a}, so \\boxed{{{a}}}",
        f"{ramble} The result is {a}. Answer: {a}",
        f"Answer: {a}, or maybe {b}.",
        f"I think it might be {a}, not sure. Answer: {a}",
        f"Answer: {a}. Answer: {a}. Answer: {a}.",
        f"{a} {a} {a}",
        f"Answer: {a}\nAnswer: {b}",
        f"{a} {b}",
    ]


def _code_styles(c: str, rng: random.Random) -> list[str]:
    d = _nudge(c, rng)
    ramble = " ".join(rng.sample(_RAMBLE, 3))
    return [
        c,
        f"{c}  # from the examples",
        f"{c}  # {ramble}",
        f"{c}  # or maybe {d}, not sure",
        f"{c}\n    return {c}\n    return {c}",
        f"{c}\n    return {d}",
        f"{c}  # I think",
    ]


def _expression(prompt: str) -> str:
    """The problem's expression ("347+589" of "347+589="), for shown working."""
    last = prompt.strip().splitlines()[-1] if prompt.strip() else ""
    return last.rstrip("= ").strip() or "x"


def candidate_responses(prompt: str, samples: Sequence[str], style: str,
                        rng: random.Random) -> list[str]:
    """The policy's own samples as they are, plus their first line dressed in every style."""
    answer = next((s.strip().splitlines()[0].strip() for s in samples if s.strip()), "0")
    styled = (
        _code_styles(answer, rng)
        if style == "code"
        else _answer_styles(answer, _expression(prompt), rng)
    )
    return list(dict.fromkeys([*samples, *styled]))  # distinct, order kept


def rubric_pairs(
    prompts: Sequence[str], samples: Sequence[Sequence[str]], *, style: str, pairs_per_prompt: int,
    label_noise: float, seed: int,
) -> list[PreferencePair]:
    """Up to pairs_per_prompt pairs per prompt of responses the rubric scores differently;
    chosen = the higher-scored one, except for a `label_noise` share whose labels are flipped."""
    rng = random.Random(seed)
    pairs = []
    for prompt, own in zip(prompts, samples):
        scored = [(r, rubric_score(r, style)) for r in candidate_responses(prompt, own, style,
                                                                           rng) if r.strip()]
        options = [(a, b) for i, a in enumerate(scored) for b in scored[i + 1 :] if a[1] != b[1]]
        for (r1, s1), (r2, s2) in rng.sample(options, min(pairs_per_prompt, len(options))):
            chosen, rejected = (r1, r2) if s1 > s2 else (r2, r1)
            flipped = rng.random() < label_noise
            if flipped:
                chosen, rejected = rejected, chosen
            pairs.append(PreferencePair(prompt, chosen, rejected, 0.0, flipped))
    return pairs
