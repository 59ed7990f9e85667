"""AI feedback (ai_feedback.py) and the judge as a reward signal (`verifier: judge`): the
mechanism with stand-in judges whose answers are known, and the real entry points with the
built-in model as the judge (random weights: the plumbing, not the quality)."""
import json
import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from helpers.runs import read_jsonl, run_entry

from hybrid_rl.data.samples import Sample
from hybrid_rl.recipes.ai_feedback import (
    VerdictCache,
    critique_and_revise,
    judge_pairs,
    preference_rows,
)
from hybrid_rl.rewards.judge import Principle, Verdict
from hybrid_rl.rewards.judge_signal import JudgeSignal
from hybrid_rl.rewards.learned.loss import bradley_terry_loss
from hybrid_rl.rewards.learned.pairs import PreferencePair, pair_from_row

PRINCIPLES = [Principle("correct", "Be right.")]


class LikesTheTruth:
    """A stand-in judge: P(first) = 0.9 when the first response contains 'right', 0.1 when
    the second does, else 0.5; counts the questions it is asked."""

    name, batch_size = "stand-in", 2

    def __init__(self):
        self.asked = 0

    def question(self, prompt, first, second, principle):
        return f"{prompt}|{first}|{second}|{principle}"

    def p_first(self, questions):
        self.asked += len(questions)
        out = []
        for q in questions:
            _, first, second, _ = q.split("|")
            out.append(0.9 if "right" in first else 0.1 if "right" in second else 0.5)
        return out

    def compare(self, prompts, a, b, principles):
        f = self.p_first([self.question(*x) for x in zip(prompts, a, b, principles)])
        r = self.p_first([self.question(*x) for x in zip(prompts, b, a, principles)])
        return [Verdict(x, 1.0 - y) for x, y in zip(f, r)]

    def generate(self, requests, max_new_tokens):
        return ["right, revised" if "Critique:" in r else "too vague" for r in requests]


PAIRS = [PreferencePair("p1", "right", "wrong"), PreferencePair("p2", "wrong", "right"),
         PreferencePair("p3", "meh", "also meh")]


def test_verdicts_are_cached_and_a_line_cut_by_a_kill_is_asked_again(tmp_path):
    cache_file = tmp_path / "cache.jsonl"
    judge = LikesTheTruth()
    verdicts = judge_pairs(judge, VerdictCache(cache_file), PAIRS, PRINCIPLES)
    assert [v.winner for _, v in verdicts] == ["a", "b", "tie"]
    assert judge.asked == 6  # three pairs, both orders
    lines = cache_file.read_text().splitlines()
    cache_file.write_text("\n".join(lines[:-1]) + "\n" + lines[-1][:10])  # killed mid-line
    again = LikesTheTruth()
    resumed = VerdictCache(cache_file)
    assert judge_pairs(again, resumed, PAIRS, PRINCIPLES) == verdicts
    assert again.asked == 1 and resumed.hits == 5


def test_preference_rows_put_the_winner_first_and_keep_ties_only_when_soft():
    verdicts = [("Be right.", Verdict(0.9, 0.8)), ("Be right.", Verdict(0.2, 0.1)),
                ("Be right.", Verdict(0.7, 0.4))]
    dropped = preference_rows(PAIRS, verdicts, "drop", "j")
    assert [(r["chosen"], r["rejected"]) for r in dropped] == [("right", "wrong"),
                                                                 ("right", "wrong")]
    assert "label" not in dropped[0] and dropped[1]["p_first_order"] == 0.2
    soft = preference_rows(PAIRS, verdicts, "soft", "j")
    assert soft[2]["chosen"] == "meh" and soft[2]["label"] == pytest.approx(0.55)
    assert pair_from_row(soft[2]).label == pytest.approx(0.55)  # what train_rm.py reads


def test_soft_labels_in_the_bradley_terry_loss_by_hand():
    d = torch.tensor([2.0, -1.0])
    loss = bradley_terry_loss(d, torch.zeros(2), label=torch.tensor([0.5, 1.0]))
    by_hand = (-(0.5 * F.logsigmoid(torch.tensor(2.0)) + 0.5 * F.logsigmoid(torch.tensor(-2.0)))
               - F.logsigmoid(torch.tensor(-1.0))) / 2
    assert loss.item() == pytest.approx(by_hand.item())
    assert bradley_terry_loss(d, torch.zeros(2), label=torch.ones(2)).item() == pytest.approx(
        bradley_terry_loss(d, torch.zeros(2)).item())
    with pytest.raises(ValueError, match="'label' must be a probability"):
        pair_from_row({"prompt": "p", "chosen": "a", "rejected": "b", "label": 1.5})


def test_verifier_labels_where_exactly_one_side_passes():
    from hybrid_rl.config.task import TaskConfig
    from hybrid_rl.recipes.ai_feedback import agreement, verifier_labels

    task = TaskConfig(rewards={"correctness": {"verifier": "math"}})
    cfg = SimpleNamespace(tasks=lambda: {"math": task})
    pairs = [PreferencePair("1+2=", "3", "4"), PreferencePair("2+2=", "5", "4"),
             PreferencePair("3+3=", "6", "6.0"), PreferencePair("9+9=", "18", "17")]
    samples = [Sample("1+2=", "3", "math"), Sample("2+2=", "4", "math"),
               Sample("3+3=", "6", "math")]  # no reference for 9+9=
    labels = verifier_labels(cfg, pairs, samples)
    assert labels == [True, False, None, None]  # both right (6 = 6.0): no label
    verdicts = [("", Verdict(0.9, 0.8)), ("", Verdict(0.9, 0.8)), ("", Verdict(0.1, 0.1)),
                ("", Verdict(0.9, 0.9))]
    assert agreement(pairs, verdicts, labels) == (0.5, 2)
    biased = [("", Verdict(0.9, 0.3)), ("", Verdict(0.8, 0.1)), ("", Verdict(0.9, 0.1)),
              ("", Verdict(0.9, 0.1))]  # every order picks A: all ties
    assert math.isnan(agreement(pairs, biased, labels)[0])
    # averaged over both orders the bias cancels: P(a) 0.6 (chosen) and 0.45 (rejected)
    assert agreement(pairs, biased, labels, mean_verdict=True) == (1.0, 2)


def test_critique_then_revise_pairs_the_revision_over_the_original():
    rows = critique_and_revise(LikesTheTruth(), PAIRS, PRINCIPLES, 8)
    assert [(r["chosen"], r["rejected"]) for r in rows] == [
        ("right, revised", "wrong"), ("right, revised", "right"), ("right, revised", "also meh")]
    assert rows[0]["critique"] == "too vague" and rows[0]["principle"] == "Be right."


def signal(against, timeout_s=60.0):
    s = JudgeSignal(SimpleNamespace(constitution="math", against=against, timeout_s=timeout_s),
                    cache_dir="unused")
    s.judge = LikesTheTruth()
    return s


def test_the_judge_signal_against_the_reference_and_within_the_group():
    samples = [Sample("p", "right", "t"), Sample("p", "right", "t"), Sample("q", None, "t")]
    scores = signal("reference")(["right too", "no", "right"], [s.reference for s in samples],
                                 samples=samples)
    # 'right too' vs 'right': both orders 0.5 -> 0.5; 'no' vs 'right': 0.1 and 0.1 -> 0.1
    assert scores[:2] == pytest.approx([0.5, 0.1]) and scores[2] is None
    group = [Sample("p", None, "t")] * 3
    scores = signal("group")(["right", "no", "nope"], [None] * 3, samples=group)
    assert scores == pytest.approx([0.9, 0.3, 0.3])  # mean win probability in the group


def test_a_judge_out_of_time_scores_half_flagged_as_timed_out():
    samples = [Sample("p", "right", "t")] * 2
    scores = signal("reference", timeout_s=1e-9)(["a", "b"], ["right"] * 2, samples=samples)
    assert scores == [0.5, 0.5] and all("timed out" in s.reason for s in scores)


@pytest.mark.slow
def test_ai_feedback_killed_resumes_from_its_cache_and_train_rm_reads_its_file(tmp_path):
    """SIGKILL once the first batch's verdicts are on disk; the rerun asks only the rest, and
    its file trains a reward model."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from helpers.runs import ROOT, tiny_overrides

    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"prompt": f"{i}+1=", "chosen": str(i + 1),
                                         "rejected": f"Maybe {i + 2}?"}) + "\n"
                             for i in range(40)))
    # one question a batch: 80 appends to the cache, so the kill lands in the middle
    common = ["judge.model=builtin", "judge.batch_size=1", "ai_feedback.pairs.source=jsonl",
              f"ai_feedback.pairs.path={pairs}"]
    cache = tmp_path / "cache"
    proc = subprocess.Popen([sys.executable, str(ROOT / "ai_feedback.py"),
                             *tiny_overrides("ai_feedback.py"), *common,
                             f"hydra.run.dir={tmp_path / 'killed'}"], cwd=ROOT,
                            env={**os.environ, "HYBRID_RL_CACHE": str(cache)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not any(f.stat().st_size for f in (cache / "ai_feedback").glob("*.jsonl")):
        assert proc.poll() is None and time.monotonic() < deadline, "ended before the kill"
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)  # no chance to clean up
    proc.wait()
    assert not (tmp_path / "killed" / "report.json").exists()  # it died before the end
    run_entry("ai_feedback.py", tmp_path / "b", *common, cache=cache)
    report = json.loads((tmp_path / "b" / "report.json").read_text())
    assert report["pairs"] == 40 and 0 < report["questions_from_cache"] < 80
    assert 0 <= report["position_bias_rate"] <= 1 and report["questions_per_s"] > 0
    rows = read_jsonl(tmp_path / "b" / "ai_preferences.jsonl")  # ties=soft: every pair kept
    assert len(rows) == 40 and {r["judge"] for r in rows} == {"builtin"}
    assert all(0 < r["p_first_order"] < 1 and r["principle"] for r in rows)
    proc = run_entry("train_rm.py", tmp_path / "rm", "reward_model.data.source=jsonl",
                     f"reward_model.data.path={tmp_path / 'b' / 'ai_preferences.jsonl'}",
                     "reward_model.max_steps=2", "reward_model.batch_size=2",
                     "reward_model.eval_fraction=0.3", cache=cache)
    assert json.loads((tmp_path / "rm" / "metrics.json").read_text())["fit"]["steps"] == 2, proc


@pytest.mark.slow
def test_train_py_blends_the_judge_as_a_signal(tmp_path):
    run_entry("train.py", tmp_path / "run", "trainer.max_steps=1", "judge.model=builtin",
              "+task.rewards.judge={verifier: judge, weight: 0.5}", cache=tmp_path / "cache")
    step = [r for r in read_jsonl(tmp_path / "run" / "metrics.jsonl") if "loss" in r][0]
    assert 0 < step["reward/judge/mean"] < 1 and step["reward/judge/errors"] == 0
    assert not math.isnan(step["reward/judge/weighted_mean"])


def test_a_bad_constitution_stops_the_run_naming_the_file(tmp_path):
    bad = tmp_path / "c.yaml"
    bad.write_text("principles: not a list\n")
    from hybrid_rl.rewards.judge import ConstitutionError

    with pytest.raises(ConstitutionError, match=r"c.yaml: a constitution is a non-empty list"):
        JudgeSignal(SimpleNamespace(constitution=str(bad)), cache_dir="unused")
