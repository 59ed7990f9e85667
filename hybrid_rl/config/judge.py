"""`judge` (an AI judge model and its constitution: `verifier: judge`, ai_feedback.py) and
`ai_feedback` (what ai_feedback.py labels and how); README "AI feedback"."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, Optional

from hybrid_rl.config.checks import choice, positive
from hybrid_rl.config.reward import PreferenceDataConfig


@dataclass
class JudgeConfig:
    """A causal LM that compares two responses against one principle of a constitution."""

    # smollm2_135m (the packaged SmolLM2-135M-Instruct) | builtin (the built-in model: tests)
    # | a Hugging Face model folder
    model: str = "smollm2_135m"
    constitution: str = "math"  # a shipped one (math, explain) or a YAML file
    chat_template: bool = True  # ask as a user turn in the judge's chat format, when it has one
    max_length: int = 1024  # tokens of a question (cut from the left)
    batch_size: int = 8  # questions per forward pass
    # verifier: judge scores a completion against: reference (the sample's reference answer)
    # | group (the other completions of its prompt: its mean win probability)
    against: str = "reference"
    timeout_s: float = 60.0  # verifier: judge; completions not judged by then score 0.5, flagged

    def problems(self) -> Iterator[str]:
        yield from choice("against", self.against, {"reference", "group"})
        for f in ("max_length", "batch_size", "timeout_s"):
            yield from positive(f, getattr(self, f))


@dataclass
class AIFeedbackConfig:
    """ai_feedback.py: candidate pairs judged in both orders into a preference file."""

    # the candidate pairs: a preference file (its labels are kept to measure agreement) or,
    # source=generator, the starting policy's samples labelled by the rubric (as train_rm.py)
    pairs: PreferenceDataConfig = field(default_factory=PreferenceDataConfig)
    max_pairs: Optional[int] = 2000  # judge at most this many candidate pairs (None: all)
    # a pair whose two orders disagree: drop it | soft: keep it with label = P(chosen better)
    # averaged over both orders. soft by default: the default judge, SmolLM2-135M, picks the
    # first position in every order (README "AI feedback": measured), so drop would keep nothing
    ties: str = "soft"
    # Constitutional AI's critique-then-revise: per prompt, the judge critiques the policy's
    # answer against one principle and revises it; (revision, original) becomes a pair too
    critique_revise: bool = False
    revise_max_new_tokens: int = 64
    output: str = "ai_preferences.jsonl"  # in the run folder

    def problems(self) -> Iterator[str]:
        yield from choice("ties", self.ties, {"drop", "soft"})
        yield from positive("max_pairs", self.max_pairs)
        yield from positive("revise_max_new_tokens", self.revise_max_new_tokens)
        yield from (f"pairs.{p}" for p in self.pairs.problems())
