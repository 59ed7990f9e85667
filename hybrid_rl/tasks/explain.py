"""`task=explain`'s problems: "Explain 47+85." asks for a short explained answer, and no program
can judge how well it is explained: the task's training signal is the learned reward alone
(README "Task mixtures").

The demonstrations vary in style the way answers written by many people do: bare, marked,
with working, rambling, hedging, repeating. That variety is what gives a preference signal
something to choose between; supervised warm-up imitates all of it. Every demonstration's
answer is right, so the verifier (logged at weight 0) measures whether a style-only reward
keeps the answers right.
"""
from __future__ import annotations

import random

from hybrid_rl.tasks.arithmetic import arithmetic

FILLERS = ("Well, let me think.", "Hmm, okay so.", "Basically we add it up.", "Let me think.")
HEDGES = ("I think it is {a}, not sure.", "Maybe {a}.", "It might be {a}.")


def explained(expr: str, answer: str, style: str, rng: random.Random) -> str:
    """One answer to "Explain <expr>." in a named style (STYLES)."""
    if style == "bare":
        return answer
    if style == "marked":
        return f"Answer: {answer}"
    if style == "working":
        return f"{expr}={answer}. Answer: {answer}"
    if style == "rambling":
        return f"{rng.choice(FILLERS)} {expr} is {answer}. Answer: {answer}"
    if style == "hedging":
        return rng.choice(HEDGES).format(a=answer) + f" Answer: {answer}"
    if style == "repeating":
        return f"Answer: {answer}. Answer: {answer}."
    raise ValueError(f"unknown style {style!r}")


STYLES = ("bare", "marked", "working", "rambling", "hedging", "repeating")


def explain(num: int, seed: int, min_digits: int = 1, max_digits: int = 2,
            operations: str = "+-", styles: str = ",".join(STYLES),
            verb: str = "Explain") -> list[tuple]:
    """Problems "Explain 47+85." whose reference is the integer result; the demonstration
    is the right answer written in one of `styles` (comma-separated, drawn uniformly, from a
    stream of their own so the problems do not depend on them). `verb` opens the prompt, so
    two tasks of this kind in one mixture ask differently and the policy can tell them apart."""
    chosen = [s.strip() for s in styles.split(",") if s.strip()]
    unknown = sorted(set(chosen) - set(STYLES))
    if not chosen or unknown:
        from hybrid_rl.data.samples import DataError

        raise DataError(f"explain generator: styles must be some of {list(STYLES)}, "
                        f"got {styles!r}")
    rng = random.Random(f"styles-{seed}")
    out = []
    for problem, answer, _ in arithmetic(num, seed, min_digits, max_digits, operations):
        expr = problem.rstrip("=")
        style = rng.choice(chosen)
        out.append((f"{verb} {expr}.", answer, explained(expr, answer, style, rng),
                    {"style": style}))
    return out
