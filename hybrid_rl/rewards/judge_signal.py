"""`verifier: judge`: the AI judge as a reward signal (a generative reward model).

Each completion is compared with the sample's reference answer (judge.against=reference) or
with the other completions of its prompt (against=group: its mean win probability), asked in
both orders against one principle of the constitution; the score is P(completion better),
averaged over the orders, in [0, 1]. It runs in the trainer process on the whole batch (the
judge is loaded once, on first use). judge.timeout_s bounds a call: completions not judged by
then score 0.5 (no preference) flagged as timed out, so they count in the signal's timeouts and
failure rate like every verifier's.
"""
from __future__ import annotations

import time
from collections import defaultdict
from typing import Optional, Sequence

from hybrid_rl.rewards.judge import load_constitution, pick_principle
from verifiers import Flagged


class JudgeSignal:
    runs_isolated = True  # called in-process on the whole batch (see verifiers.Verifier)

    def __init__(self, judge, cache_dir: str):
        self.settings, self.cache_dir = judge, cache_dir
        self.principles = load_constitution(judge.constitution)  # a bad file fails at start
        self.judge = None

    def __call__(self, completions: Sequence[str], references, samples=None,
                 **fields) -> list[Optional[float]]:
        if samples is None:
            raise ValueError("the judge needs the samples (their prompts) to score completions")
        if self.judge is None:
            from hybrid_rl.rewards.judge import load_judge

            self.judge = load_judge(self.settings, self.cache_dir)
        comparisons = self._comparisons([s.prompt for s in samples], list(completions),
                                        list(references))
        wins: dict[int, list[float]] = defaultdict(list)
        judged = {i for c in comparisons for i in c[:2] if i is not None}
        deadline = time.monotonic() + self.settings.timeout_s
        for start in range(0, len(comparisons), self.judge.batch_size):
            if time.monotonic() > deadline:
                break
            chunk = comparisons[start : start + self.judge.batch_size]
            verdicts = self.judge.compare(*zip(*[c[2:] for c in chunk]))
            for (i, j, *_), verdict in zip(chunk, verdicts):
                wins[i].append(verdict.p_a)
                if j is not None:  # the other side of a pair within the group
                    wins[j].append(1.0 - verdict.p_a)
        timed_out = Flagged(0.5, f"judge timed out after {self.settings.timeout_s}s")
        return [None if i not in judged else sum(wins[i]) / len(wins[i]) if wins[i]
                else timed_out for i in range(len(completions))]

    def _comparisons(self, prompts, completions, references) -> list[tuple]:
        """(i, j or None, prompt, completion i, the other, principle) for every comparison:
        against the reference, or each pair i < j of a prompt's completions once."""
        out = []
        if self.settings.against == "reference":
            for i, (p, c, r) in enumerate(zip(prompts, completions, references)):
                if r is not None:  # no reference: no opinion
                    out.append((i, None, p, c, str(r), pick_principle(self.principles, p, c).text))
            return out
        by_prompt: dict[str, list[int]] = defaultdict(list)
        for i, p in enumerate(prompts):
            by_prompt[p].append(i)
        for p, rows in by_prompt.items():
            out += [(i, j, p, completions[i], completions[j],
                     pick_principle(self.principles, p, completions[i], completions[j]).text)
                    for k, i in enumerate(rows) for j in rows[k + 1:]]
        return out
