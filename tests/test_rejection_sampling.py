"""rejection_sampling.py: what a round keeps (by hand), the real entry point with tiny
settings, resume between rounds, and bad settings named."""
import pytest
import torch
from helpers.runs import (
    ROOT,
    config_error,
    killed_and_resumed,
    read_jsonl,
    rows_without_timing,
    run_entry,
)

from hybrid_rl.recipes.rejection_sampling import kept_rows
from hybrid_rl.rewards.composition import SignalRule

# task t: correctness counts, preference gated on it; task e: preference alone (correctness
# logged at weight 0)
RULES = {"t": {"correctness": SignalRule(1.0), "preference": SignalRule(0.5, "group",
                                                                         "correctness")},
         "e": {"correctness": SignalRule(0.0), "preference": SignalRule(1.0, "group")}}
ACCURACY = {"t": "correctness", "e": "correctness"}


def test_a_round_keeps_the_best_distinct_right_answers_of_each_prompt():
    texts = ["7", "7", "8", "x",  # t: two right (the same text), two wrong
             "a", "b", "c", "d",  # t: all wrong: nothing kept
             "p", "q", "r", "s"]  # e: correctness does not count; the best two kept
    reward = torch.tensor([1.2, 1.2, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.1, 0.9, 0.5, -1.0])
    values = {"correctness": [1.0, 1.0, 0.0, 0.0] + [0.0] * 4 + [0.0] * 4,
              "preference": [0.3, 0.3, 0.9, 0.9] + [0.1] * 4 + [0.1, 0.9, 0.5, -1.0]}
    tasks = ["t"] * 8 + ["e"] * 4
    kept, groups = kept_rows(texts, reward, values, tasks, RULES, ACCURACY, 4, 2, None)
    assert kept == [0, 9, 10] and groups == 2  # "7" once; the wrong "8" never
    kept, _ = kept_rows(texts, reward, values, tasks, RULES, ACCURACY, 4, 2, 0.6)
    assert kept == [0, 9]  # the reward floor drops "r" (0.5)


# About half of the random tiny model's completions earn this reward, so rounds keep some.
HALF_THE_TIME = ("task.rewards.correctness.verifier={_target_:watch_helpers.starts_with_letter}",)
HELPERS = {"PYTHONPATH": str(ROOT / "tests" / "helpers")}
RS_TINY = ["rejection.rounds=2", "rejection.eval_every_rounds=1", "rejection.batch_size=4",
           "logging.tensorboard=false", *HALF_THE_TIME]


def test_rounds_keep_fine_tune_and_evaluate_lora_adapters(tmp_path):
    proc = run_entry("rejection_sampling.py", tmp_path / "run", *RS_TINY,
                     "model.lora.enabled=true", "model.lora.rank=4", cache=tmp_path / "cache",
                     env=HELPERS)
    assert "model.lora: training" in proc.stdout + proc.stderr
    rows = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    rounds = [r for r in rows if "rejection/kept" in r]
    assert [r["step"] for r in rounds] == [1, 2]
    for r in rounds:
        assert r["rejection/kept"] > 0 and 0 < r["rejection/keep_rate"] <= 1
        # 0/1 rewards: a prompt's best is 1 exactly when it has a right answer to keep
        assert r["rejection/best_reward"] == r["rejection/keep_rate"]
        # 2 epochs over the kept completions in minibatches of 4
        assert r["sft_steps"] == 2 * -(-r["rejection/kept"] // 4) and r["loss"] > 0
    assert [r["step"] for r in rows if "eval/accuracy" in r] == [0, 1, 2]


def test_sigkill_between_rounds_resumes_exactly(tmp_path):
    extra = [*RS_TINY, "rejection.rounds=4", "rejection.eval_every_rounds=0",
             "checkpoint.every_steps=1", "checkpoint.keep_last=5"]
    run_entry("rejection_sampling.py", tmp_path / "whole", *extra, cache=tmp_path / "cache",
              env=HELPERS)
    resumed = killed_and_resumed("rejection_sampling.py", tmp_path / "killed", *extra,
                                 cache=tmp_path / "cache", kill_at_step=2, total_steps=4,
                                 env=HELPERS)
    assert resumed == rows_without_timing(tmp_path / "whole")


@pytest.mark.parametrize("override, named", [
    ("rejection.keep_top=0", "rejection.keep_top: must be > 0"),
    ("rejection.rounds=-1", "rejection.rounds: must be > 0"),
])
def test_bad_settings_are_named(override, named):
    assert named in config_error("rejection_sampling", override)
