"""Verifiers for a constructed reward-hacking run, reached through `_target_` in the config:
the "learned" proxy rewards completions that contain a 7, the "verified" signal passes those
that do not, so every gain of the proxy is a loss of accuracy."""


def contains_seven():
    return lambda completions, references, **_: [float("7" in c) for c in completions]


def no_seven():
    return lambda completions, references, **_: [float("7" not in c) for c in completions]


def starts_with_letter():
    """About half of a random model's completions start with a letter: a reward whose groups
    differ, for runs that must take a real gradient step before any model can add."""
    return lambda completions, references, **_: [float(c[:1].isalpha()) for c in completions]
