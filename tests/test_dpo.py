"""dpo.py: pairs from the policy's own ranked samples or from files, the loss update, the real
entry point with tiny settings (online and offline, resume), and bad input named."""
import json

import pytest
import torch
from helpers.runs import (
    config_error,
    killed_and_resumed,
    read_jsonl,
    rows_without_timing,
    run_entry,
)

from hybrid_rl.recipes.dpo import best_and_worst, encode_pairs


def test_best_and_worst_pick_each_groups_ends_and_skip_ties():
    reward = torch.tensor([1.0, 0.0, 0.5, 0.0, 0.0, 0.0, 2.0, 3.0, 1.0])
    best, worst = best_and_worst(reward, 3)
    assert best.tolist() == [0, 7] and worst.tolist() == [1, 8]  # the all-equal group gives none


def test_encoded_pairs_are_shaped_as_rollouts_are():
    from hybrid_rl.models.tiny import build_char_tokenizer

    tok = build_char_tokenizer()
    batch = encode_pairs(tok, ["1+2=", "10+20="], ["3", "30"])
    assert batch.prompt_mask.tolist() == [[0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]]  # left-padded
    assert batch.completion_mask.tolist() == [[1, 1, 0], [1, 1, 1]]  # answer + EOS, right-padded
    assert batch.completion_ids[0, 1].item() == tok.eos_token_id
    assert tok.decode(batch.prompt_ids[1].tolist()) == "10+20="
    # too long for a context of 6: the prompt loses its start, the answer stays whole
    cut = encode_pairs(tok, ["10+20="], ["30"], max_length=6)
    assert tok.decode(cut.prompt_ids[0].tolist()) == "20=" and cut.completion_mask.sum() == 3


# 48 pairs a small model can separate: the chosen answer is the sum, the rejected one "x"
PAIRS = [{"prompt": f"{a}+{b}=", "chosen": str(a + b), "rejected": "x"}
         for a in range(1, 9) for b in range(1, 7)]
DPO_TINY = ["trainer.max_steps=2", "logging.tensorboard=false"]


def write_pairs(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_offline_dpo_on_separable_pairs_learns_them(tmp_path):
    data = write_pairs(tmp_path / "pairs.jsonl", PAIRS)
    proc = run_entry("dpo.py", tmp_path / "run", "dpo.pairs=offline", "dpo.data.source=jsonl",
                     f"dpo.data.path={data}", "dpo.eval_fraction=0.25", "dpo.beta=0.5",
                     "trainer.max_steps=30", "trainer.prompts_per_step=12",
                     "trainer.learning_rate=3e-3", "eval.every_steps=30",
                     "logging.tensorboard=false", cache=tmp_path / "cache")
    assert f"36 training and 12 held-out pairs from {data}" in proc.stdout + proc.stderr
    evals = [r for r in read_jsonl(tmp_path / "run" / "metrics.jsonl")
             if "eval/pairs/rewards/accuracy" in r]
    assert evals[0]["step"] == 0 and evals[0]["eval/pairs/rewards/accuracy"] == 0.0  # policy ==
    assert evals[-1]["step"] == 30 and evals[-1]["eval/pairs/rewards/accuracy"] > 0.95  # reference
    assert evals[-1]["eval/pairs/loss"] < evals[0]["eval/pairs/loss"]


@pytest.mark.parametrize("loss", ["dpo", "ipo", "simpo", "orpo"])
def test_online_dpo_runs_each_loss_end_to_end(tmp_path, loss):
    # plain DPO on LoRA adapters: its reference is then the base with the adapters off
    adapters = ["model.lora.enabled=true", "model.lora.rank=4"] if loss == "dpo" else []
    proc = run_entry("dpo.py", tmp_path / "run", f"dpo.loss={loss}", *DPO_TINY, *adapters,
                     "trainer.num_generations=4", cache=tmp_path / "cache")
    rows = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    steps = [r for r in rows if "time/step_s" in r]
    assert [r["step"] for r in steps] == [1, 2]
    for r in steps:
        assert 0.0 <= r["pairs/kept_fraction"] <= 1.0 and "reward/total/mean" in r
        if r["pairs/kept_fraction"] > 0:  # some prompt's samples differed: an update was made
            assert {"loss", "rewards/margin", "rewards/accuracy", "logps/chosen"} <= set(r)
    assert [r["step"] for r in rows if "eval/accuracy" in r] == [0, 1, 2]
    free = loss in ("simpo", "orpo")
    assert ("no reference model" in proc.stdout + proc.stderr) == free
    assert ("the base with the LoRA adapters off" in proc.stdout + proc.stderr) == bool(adapters)


def test_sigkill_resume_of_offline_dpo_matches_the_uninterrupted_run(tmp_path):
    data = write_pairs(tmp_path / "pairs.jsonl", PAIRS)
    extra = ["dpo.pairs=offline", "dpo.data.source=jsonl", f"dpo.data.path={data}",
             "trainer.max_steps=6", "checkpoint.every_steps=2", "checkpoint.keep_last=5",
             "eval.every_steps=0", "logging.tensorboard=false"]
    run_entry("dpo.py", tmp_path / "whole", *extra, cache=tmp_path / "cache")
    resumed = killed_and_resumed("dpo.py", tmp_path / "killed", *extra, cache=tmp_path / "cache",
                                 kill_at_step=2, total_steps=6)
    assert resumed == rows_without_timing(tmp_path / "whole")


@pytest.mark.parametrize("override, named", [
    (["dpo.loss=kto"], "dpo.loss: must be one of"),
    (["dpo.label_smoothing=0.5"], "dpo.label_smoothing: must be in [0, 0.5)"),
    (["dpo.pairs=offline", "dpo.data.source=jsonl"], "dpo.data.path: source=jsonl needs"),
])
def test_bad_settings_are_named(override, named):
    assert named in config_error("dpo", *override)


def test_a_bad_pair_row_is_named_with_its_file_and_line(tmp_path):
    data = write_pairs(tmp_path / "pairs.jsonl", PAIRS[:3] + [{"prompt": "1+1=", "chosen": "2"}])
    proc = run_entry("dpo.py", tmp_path / "run", "dpo.pairs=offline", "dpo.data.source=jsonl",
                     f"dpo.data.path={data}", cache=tmp_path / "cache", check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "pairs.jsonl" in out and "rejected" in out
