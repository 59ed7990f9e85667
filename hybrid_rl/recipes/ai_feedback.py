"""AI feedback: `python ai_feedback.py` (README "AI feedback").

Reads top to bottom: candidate pairs (a preference file, or the starting policy's samples
labelled by the rubric, as train_rm.py makes them), each judged in both orders against one
principle of the constitution (verdicts cached by content, so a killed run resumes where it
stopped), optionally critique-then-revise pairs, then the preference file train_rm.py and
dpo.py read and a report: agreement with the input labels and with the verifier, the
position-bias rate and the throughput.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Optional

from omegaconf import DictConfig
from tqdm import tqdm

from hybrid_rl.models.loading import settings_key
from hybrid_rl.recipes import build
from hybrid_rl.recipes.reward_model import preference_pairs
from hybrid_rl.rewards.judge import (
    QUESTION,
    Judge,
    Verdict,
    judge_location,
    load_constitution,
    load_judge,
    pick_principle,
    position_bias_rate,
)
from hybrid_rl.rewards.learned.pairs import PreferencePair
from verifiers import get_verifier

log = logging.getLogger("hybrid_rl")
CRITIQUE = ("Principle: {principle}\n\nRequest: {prompt}\n\nResponse: {response}\n\n"
            "Point out, in one or two sentences, how the response falls short of the principle.")
REVISE = ("Principle: {principle}\n\nRequest: {prompt}\n\nResponse: {response}\n\n"
          "Critique: {critique}\n\nRewrite the response so that it follows the principle. "
          "Reply with the rewritten response only.")


class VerdictCache:
    """P(first) per question text, appended to a JSONL file after every batch: a rerun with
    the same judge reads what an earlier (possibly killed) run already asked."""

    def __init__(self, path: Path):
        self.path, self.values = path, {}
        if path.is_file():
            for line in path.read_text().splitlines():
                try:
                    row = json.loads(line)
                    self.values[row["key"]] = float(row["p_first"])
                except (ValueError, KeyError, TypeError):
                    continue  # a line cut short by a kill: asked again
        self.hits = 0

    @staticmethod
    def key(question: str) -> str:
        return hashlib.sha256(question.encode()).hexdigest()

    def p_first(self, judge: Judge, questions: list[str]) -> list[float]:
        """The judge's P(first) of each question, asking only what is not cached."""
        missing = list(dict.fromkeys(q for q in questions if self.key(q) not in self.values))
        self.hits += len(questions) - len(missing)
        if missing:
            answers = judge.p_first(missing)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a") as fh:
                for q, p in zip(missing, answers):
                    self.values[self.key(q)] = p
                    fh.write(json.dumps({"key": self.key(q), "p_first": p}) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
        return [self.values[self.key(q)] for q in questions]


def judge_pairs(judge: Judge, cache: VerdictCache, pairs: list[PreferencePair],
                principles: list) -> list[tuple[str, Verdict]]:
    """(principle, verdict on (chosen, rejected)) per pair, asked in batches of both orders."""
    out = []
    step = judge.batch_size
    for start in tqdm(range(0, len(pairs), step), desc="judging", disable=None):
        chunk = pairs[start : start + step]
        rules = [pick_principle(principles, p.prompt, p.chosen, p.rejected).text for p in chunk]
        forward = [judge.question(p.prompt, p.chosen, p.rejected, r) for p, r in zip(chunk, rules)]
        backward = [judge.question(p.prompt, p.rejected, p.chosen, r)
                    for p, r in zip(chunk, rules)]
        p = cache.p_first(judge, forward + backward)
        out += [(r, Verdict(f, 1.0 - b)) for r, f, b in zip(rules, p[: len(chunk)],
                                                            p[len(chunk):])]
    return out


def preference_rows(pairs, verdicts, ties: str, judge_name: str) -> list[dict]:
    """The judge's preference file: its winner as chosen; a tie dropped, or (ties=soft) kept
    with label = P(chosen better)."""
    rows = []
    for pair, (principle, v) in zip(pairs, verdicts):
        if v.winner == "tie" and ties == "drop":
            continue
        a_wins = v.p_a >= 0.5 if v.winner == "tie" else v.winner == "a"
        chosen, rejected = (pair.chosen, pair.rejected) if a_wins else (pair.rejected, pair.chosen)
        row = {"prompt": pair.prompt, "chosen": chosen, "rejected": rejected,
               "principle": principle, "p_first_order": v.p_first_order,
               "p_second_order": v.p_second_order, "judge": judge_name}
        if v.winner == "tie":
            row["label"] = max(v.p_a, 1.0 - v.p_a)
        rows.append(row)
    return rows


def critique_and_revise(judge: Judge, pairs: list[PreferencePair], principles: list,
                        max_new_tokens: int) -> list[dict]:
    """Constitutional AI's loop on each prompt's weaker answer: a critique against one
    principle, a revision; (revision, original) as a pair (skipped when unchanged or empty)."""
    firsts = list({p.prompt: p for p in pairs}.values())
    rules = [pick_principle(principles, p.prompt, p.rejected).text for p in firsts]
    critiques = judge.generate([CRITIQUE.format(principle=r, prompt=p.prompt,
                                                response=p.rejected)
                                for p, r in zip(firsts, rules)], max_new_tokens)
    revisions = judge.generate([REVISE.format(principle=r, prompt=p.prompt, response=p.rejected,
                                              critique=c)
                                for p, r, c in zip(firsts, rules, critiques)], max_new_tokens)
    return [{"prompt": p.prompt, "chosen": rev, "rejected": p.rejected, "principle": r,
             "critique": c, "judge": judge.name, "origin": "revision"}
            for p, r, c, rev in zip(firsts, rules, critiques, revisions)
            if rev and rev != p.rejected]


def agreement(pairs, verdicts, labels: list[Optional[bool]],
              mean_verdict: bool = False) -> tuple[float, int]:
    """(share of the judge's non-tie verdicts that pick the side `labels` prefer (True: the
    pair's chosen), pairs compared); pairs without a label are left out. `mean_verdict`: the
    winner by P(a better) averaged over both orders (position bias cancelled, no ties unless
    exactly even), instead of by both orders agreeing."""
    def winner(v: Verdict) -> str:
        if not mean_verdict:
            return v.winner
        return "a" if v.p_a > 0.5 else "b" if v.p_a < 0.5 else "tie"

    hits = [(winner(v) == "a") == label for (_, v), label in zip(verdicts, labels)
            if label is not None and winner(v) != "tie"]
    return (sum(hits) / len(hits) if hits else math.nan), len(hits)


def verifier_labels(cfg, pairs, samples: list) -> list[Optional[bool]]:
    """Per pair, True/False where the task's accuracy signal (a verifier found by name) passes
    exactly one side (True: chosen); None elsewhere, or where the prompt is not one of the
    task's `samples` (no reference)."""
    references = {s.prompt: s.reference for s in samples}
    task = next(iter(cfg.tasks().values()))
    name = task.signals()[task.accuracy_signal].verifier
    if not isinstance(name, str) or name in ("preference", "judge"):
        return [None] * len(pairs)
    verify = get_verifier(name)
    refs = [references.get(p.prompt) for p in pairs]
    chosen = verify([p.chosen for p in pairs], refs)
    rejected = verify([p.rejected for p in pairs], refs)
    return [None if r is None or a is None or b is None or (a >= 1) == (b >= 1) else a >= 1
            for r, a, b in zip(refs, chosen, rejected)]


def main(dcfg: DictConfig) -> float:
    cfg, run_dir = build.start_run(dcfg)
    a = cfg.ai_feedback
    principles = load_constitution(cfg.judge.constitution)  # a bad file fails before any work
    location = tokenizer = None
    train: list = []
    if a.pairs.source == "generator":
        train, held = build.task_samples(cfg)
        location, tokenizer, train, _ = build.prepare_start(cfg, train, held)
    pairs, held_pairs = preference_pairs(cfg, location, tokenizer, train, a.pairs)
    pairs = (pairs + held_pairs)[: a.max_pairs]
    judge = load_judge(cfg.judge, cfg.cache_dir)
    cache = VerdictCache(Path(cfg.cache_dir).expanduser() / "ai_feedback" / (settings_key(
        judge_location(cfg.judge.model, cfg.cache_dir), cfg.judge.chat_template,
        cfg.judge.max_length, QUESTION) + ".jsonl"))
    started = time.time()
    verdicts = judge_pairs(judge, cache, pairs, principles)
    seconds = time.time() - started
    rows = preference_rows(pairs, verdicts, a.ties, cfg.judge.model)
    if a.critique_revise:
        rows += critique_and_revise(judge, pairs, principles, a.revise_max_new_tokens)
    out = run_dir / a.output
    out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    by_label = {"input_labels": [True] * len(pairs),
                "clean_input_labels": [not p.flipped for p in pairs],
                "verifier": verifier_labels(cfg, pairs, train or build.task_samples(cfg)[0])}
    report = {
        "judge": cfg.judge.model, "constitution": cfg.judge.constitution,
        "pairs": len(pairs), "rows_written": len(rows),
        "ties": sum(v.winner == "tie" for _, v in verdicts),
        "position_bias_rate": position_bias_rate([v for _, v in verdicts]),
        "questions_from_cache": cache.hits, "seconds": round(seconds, 2),
        # labelling throughput: the questions the judge was asked (two a pair) a second
        "questions_per_s": round((2 * len(pairs) - cache.hits) / seconds, 3) if seconds else None,
    }
    for name, labels in by_label.items():  # both-orders verdicts, then the averaged ones
        for prefix, mean in (("", False), ("mean_verdict_", True)):
            share, n = agreement(pairs, verdicts, labels, mean)
            report[f"{prefix}agreement_with_{name}"], report[f"{prefix}compared_with_{name}"] = \
                share, n
    (run_dir / "report.json").write_text(json.dumps(  # NaN (nothing to compare) as null
        {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in report.items()},
        indent=2))
    log.info("[ai feedback] %d pairs judged (%d questions from the cache) in %.1fs: %d ties "
             "(position bias %.3f); agreement with the input labels %.3f (%d pairs; averaged "
             "over both orders %.3f), with the verifier %.3f (%d pairs; averaged %.3f); %d rows "
             "-> %s", len(pairs), cache.hits, seconds, report["ties"],
             report["position_bias_rate"], report["agreement_with_input_labels"],
             report["compared_with_input_labels"],
             report["mean_verdict_agreement_with_input_labels"],
             report["agreement_with_verifier"], report["compared_with_verifier"],
             report["mean_verdict_agreement_with_verifier"], len(rows), out)
    log.info("train a reward model on them: python train_rm.py reward_model.data.source=jsonl "
             "reward_model.data.path=%s", out.resolve())
    return report["agreement_with_input_labels"]
