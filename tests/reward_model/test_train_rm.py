"""The real train_rm.py, and train.py with the learned reward, on tiny settings."""
import json
from types import SimpleNamespace

import pytest
import torch
from helpers.runs import read_jsonl, run_entry
from omegaconf import OmegaConf

from hybrid_rl.models.loading import ModelLoadError
from hybrid_rl.rewards.learned.fit import evaluate_pairs
from hybrid_rl.rewards.learned.model import RewardModel
from hybrid_rl.rewards.learned.pairs import load_pairs

RM_TINY = ["task.data.num_train=300", "reward_model.max_steps=40", "reward_model.batch_size=8",
           "reward_model.data.num_prompts=200", "reward_model.eval_fraction=0.25", "num_threads=2"]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained_rm(tmp_path_factory):
    base = tmp_path_factory.mktemp("rm")
    proc = run_entry("train_rm.py", base / "run", *RM_TINY, cache=base / "cache")
    return base, base / "run" / "reward_model", proc


def test_train_rm_learns_the_rubric_and_saves_a_loadable_folder(trained_rm):
    base, folder, proc = trained_rm
    meta = json.loads((base / "run" / "metrics.json").read_text())
    assert meta["train_pairs"] > 200 and meta["validation_pairs"] > 50
    start, end = meta["validation_at_start"], meta["validation"]
    assert end["accuracy_clean"] >= start["accuracy_clean"] + 0.15, (start, end)  # MiniLM, 40 steps
    assert {"accuracy", "mean_margin",
            "ece"} <= set(end) and end["mean_margin"] > start["mean_margin"]
    # the saved folder scores the validation pairs exactly as at the end of training
    rm = RewardModel.load(folder)
    held, _ = load_pairs(
        SimpleNamespace(
            source="jsonl",
            path=str(folder / "validation_pairs.jsonl"),
            eval_path=None,
            name=None,
            split="train",
            eval_split=None,
            on_bad_row="error",
        ),
        [],
    )
    assert evaluate_pairs(rm, held)["accuracy"] == pytest.approx(end["accuracy"])
    assert "train with it: python train.py" in proc.stderr + proc.stdout


def test_train_rm_reads_a_preference_file(trained_rm, tmp_path):
    base, folder, _ = trained_rm
    proc = run_entry(
        "train_rm.py", tmp_path / "run", "reward_model.data.source=jsonl",
        f"reward_model.data.path={folder / 'train_pairs.jsonl'}", "reward_model.max_steps=2",
        "reward_model.batch_size=4", cache=base / "cache",
    )
    meta = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert meta["fit"]["steps"] == 2 and meta["data"]["source"] == "jsonl"
    assert "[sft]" not in proc.stderr + proc.stdout  # file pairs with MiniLM need no policy


def test_train_rm_trains_lora_adapters_and_saves_them_merged(trained_rm, tmp_path):
    """reward_model.lora: only the adapters and the score head train; the folder is the merged
    model (what every consumer loads) and scores as the backbone with the PEFT adapters does."""
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from hybrid_rl.rewards.learned.model import backbone_location

    base, folder, _ = trained_rm
    run_entry("train_rm.py", tmp_path / "run", "reward_model.data.source=jsonl",
              f"reward_model.data.path={folder / 'train_pairs.jsonl'}", "reward_model.max_steps=3",
              "reward_model.batch_size=4", "reward_model.lora.enabled=true",
              "reward_model.lora.rank=4", "reward_model.learning_rate=1e-3", cache=base / "cache")
    out = tmp_path / "run" / "reward_model"
    meta = json.loads((out / "hybrid_rl_reward_model.json").read_text())
    assert meta["lora"]["rank"] == 4
    minilm = AutoModelForSequenceClassification.from_pretrained(backbone_location("minilm", None),
                                                                num_labels=1)
    adapted = PeftModel.from_pretrained(minilm, str(out / "lora_adapter"))
    assert any(p.abs().sum() > 0 for n, p in adapted.named_parameters() if "lora_B" in n)
    with_adapters = RewardModel(adapted, AutoTokenizer.from_pretrained(out), meta["max_length"])
    prompts, responses = ["What is 2+2?"] * 2, ["4", "The answer is five."]
    assert RewardModel.load(out).score(prompts, responses) == pytest.approx(
        with_adapters.score(prompts, responses), abs=1e-4)


def test_a_bad_preference_file_names_file_and_row(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "p", "chosen": "a", "rejected": '
                   '"b"}\n{"prompt": "p", "chosen": "a"}\n')
    proc = run_entry("train_rm.py", tmp_path / "run", "reward_model.data.source=jsonl",
                     f"reward_model.data.path={bad}", cache=tmp_path / "cache", check=False)
    assert proc.returncode != 0
    assert f"{bad}, row 2: missing field 'rejected'" in proc.stderr


def test_not_a_reward_model_folder_is_refused(tmp_path):
    with pytest.raises(ModelLoadError, match="not a reward model saved by train_rm.py"):
        RewardModel.load(tmp_path)


def test_train_with_preference_logs_each_signal_and_the_watch(trained_rm, tmp_path):
    base, folder, _ = trained_rm
    run_dir = tmp_path / "run"
    run_entry("train.py", run_dir, "task=math_hybrid", f"reward_model.path={folder}",
              "trainer.max_steps=2", "task.rewards.preference.weight=0.5", cache=base / "cache")
    rows = read_jsonl(run_dir / "metrics.jsonl")
    steps = [r for r in rows if "loss" in r]
    for key in ("reward/correctness/mean", "reward/preference/mean",
                "reward/preference/weighted_mean",
                "reward/correctness/weighted_mean", "hacking/rank_corr", "hacking/prefers_failing"):
        assert key in steps[0], key
    assert steps[0]["reward/preference/mean"] is not None
    evals = [r for r in rows if "eval/accuracy" in r]
    assert evals[0]["eval/reward/preference"] is not None and "eval/reward/correctness" in evals[0]
    saved = (run_dir / "config.yaml").read_text()
    assert "weight: 0.5" in saved and "gate: correctness" in saved


def test_default_reward_model_is_trained_once_then_reused(tmp_path):
    args = ["task=math_hybrid", "trainer.max_steps=1", "reward_model.backbone=policy",
            "reward_model.max_steps=3",
            "reward_model.data.num_prompts=20", "reward_model.max_length=32"]
    first = run_entry("train.py", tmp_path / "a", *args, cache=tmp_path / "cache")
    assert "[reward model] training the default reward model" in first.stdout + first.stderr
    second = run_entry("train.py", tmp_path / "b", *args, cache=tmp_path / "cache")
    assert "reusing the cached default reward model" in second.stdout + second.stderr
    assert len(list((tmp_path / "cache" / "reward_model").iterdir())) == 1


def test_scores_are_batch_independent(trained_rm):
    _, folder, _ = trained_rm
    rm = RewardModel.load(folder)
    prompts, responses = ["1+2=", "10+20=", "3+4="], ["3", "Answer: 30, or maybe 31.", "7 7 7"]
    together = rm.score(prompts, responses, batch_size=8)
    alone = [rm.score([p], [r])[0] for p, r in zip(prompts, responses)]
    assert torch.allclose(torch.tensor(together), torch.tensor(alone), atol=1e-5)


def test_a_repeated_answer_is_scored_once(trained_rm):
    """A group's samples often repeat an answer: the model sees each distinct pair once, and
    every copy gets the score the pair gets alone."""
    _, folder, _ = trained_rm
    rm = RewardModel.load(folder)
    seen = []
    forward = rm.forward
    rm.forward = lambda p, r: seen.append(len(p)) or forward(p, r)
    prompts = ["1+2="] * 4 + ["3+4="] * 2
    responses = ["3", "3", "Answer: 3", "3", "7", "3"]
    scores = rm.score(prompts, responses, batch_size=2)
    assert sum(seen) == 4  # (1+2=, 3), (1+2=, Answer: 3), (3+4=, 7), (3+4=, 3)
    alone = {pair: forward([pair[0]], [pair[1]]).item() for pair in zip(prompts, responses)}
    assert scores == pytest.approx([alone[pair] for pair in zip(prompts, responses)], abs=1e-5)
    assert scores[0] == scores[1] == scores[3] and scores[5] != scores[4]


def test_evaluate_judges_win_rate_with_the_reward_model(trained_rm, tmp_path):
    base, folder, _ = trained_rm
    run_entry("evaluate.py", tmp_path / "eval", "task=math_hybrid", f"reward_model.path={folder}",
              "eval.samples_per_prompt=2", "eval.pass_k=[1]", cache=base / "cache")
    results = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert results["judge_signal"] == "preference"
    (model,) = results["models"]
    assert model["win_rate"]["win_rate"] == 0.5  # the starting model against itself: all ties
    assert "preference" in model["signal_means"] and model["signal_means"]["preference"] is not None


def test_reward_model_judges_two_different_models_consistently(trained_rm, tmp_path):
    """A trained policy against the starting one, then the other way round: the judge sees
    real differences (not all ties), and swapping the sides swaps wins and losses exactly."""
    base, folder, _ = trained_rm
    common = ["task=math_hybrid", f"reward_model.path={folder}", "eval.samples_per_prompt=0"]
    # a longer warm-up than the starting policy's 4 steps: a model that answers differently
    run_entry("train.py", tmp_path / "run", *common, "trainer.max_steps=1", "sft.steps=60",
              "checkpoint.every_steps=0", cache=base / "cache")
    trained = tmp_path / "run" / "checkpoints" / "step_000001"

    def judged(out, *args):
        run_entry("evaluate.py", tmp_path / out, *common, *args, cache=base / "cache")
        (model,) = json.loads((tmp_path / out / "results.json").read_text())["models"]
        return model["win_rate"]

    forward = judged("forward", f"evaluate.checkpoint={trained}")  # reference: the start
    backward = judged("backward", f"evaluate.reference={trained}")  # the start vs trained
    assert forward["ties"] < 8, forward  # the two models answer differently
    assert (forward["wins"], forward["ties"], forward["losses"]) == (
        backward["losses"], backward["ties"], backward["wins"])
    assert forward["win_rate"] == pytest.approx(1.0 - backward["win_rate"])


def test_multirun_sweeps_the_preference_weight(trained_rm, tmp_path):
    base, folder, _ = trained_rm
    sweep = tmp_path / "sweep"
    run_entry(
        "train.py", tmp_path / "unused", "hydra.mode=MULTIRUN", "task=math_hybrid",
        f"reward_model.path={folder}", "trainer.max_steps=1",
        "task.rewards.preference.weight=0.1,0.5", f"hydra.sweep.dir={sweep}", cache=base / "cache",
    )
    weights = sorted(
        OmegaConf.load(sweep / str(i) / "config.yaml").task.rewards.preference.weight
        for i in (0, 1)
    )
    assert weights == [0.1, 0.5]  # one run per weight, each with its own folder
    assert all((sweep / str(i) / "metrics.jsonl").is_file() for i in (0, 1))


def test_an_ensemble_trains_scores_penalised_and_its_watch_fires(trained_rm, tmp_path):
    """reward_model.ensemble_size=2: two members from two seeds, standardised on the validation
    responses; train.py with uncertainty_penalty=1 scores mean - std of the members, logs their
    disagreement every step, and the watch (set to fire at any rise) says so."""
    from hybrid_rl.rewards.learned.ensemble import RewardEnsemble, load_reward_model

    base, folder, _ = trained_rm
    run_entry("train_rm.py", tmp_path / "rm", "reward_model.data.source=jsonl",
              f"reward_model.data.path={folder / 'train_pairs.jsonl'}", "reward_model.max_steps=6",
              "reward_model.batch_size=8", "reward_model.ensemble_size=2", cache=base / "cache")
    out = tmp_path / "rm" / "reward_model"
    meta = json.loads((out / "hybrid_rl_reward_model.json").read_text())
    assert [m["folder"] for m in meta["members"]] == ["member_0", "member_1"]
    assert [m["seed"] for m in meta["members"]] == [0, 1] and meta["validation_disagreement"] > 0
    ensemble = load_reward_model(out)
    assert isinstance(ensemble, RewardEnsemble)
    prompts, responses = ["1+2="] * 2, ["3", "Answer: 3, I think."]
    by_hand = [(torch.tensor(RewardModel.load(out / f"member_{k}").score(prompts, responses),
                             dtype=torch.float64) - m["score_mean"]) / m["score_std"]
               for k, m in enumerate(meta["members"])]
    assert ensemble.score(prompts, responses) == pytest.approx(
        ((by_hand[0] + by_hand[1]) / 2).tolist())
    assert by_hand[0].tolist() != pytest.approx(by_hand[1].tolist())  # two different members

    run_dir = tmp_path / "run"
    proc = run_entry("train.py", run_dir, "task=math_hybrid", f"reward_model.path={out}",
                     "trainer.max_steps=2", "reward.gate_failures_scored=1",
                     "+task.rewards.preference.uncertainty_penalty=1.0",
                     "reward.hacking_watch.disagreement_ratio=1e-6",
                     "reward.hacking_watch.disagreement_steps=1", cache=base / "cache")
    steps = [r for r in read_jsonl(run_dir / "metrics.jsonl") if "loss" in r]
    assert all(r["reward/preference/disagreement/mean"] > 0 for r in steps)
    assert steps[0]["hacking/disagreement_ratio"] == pytest.approx(  # in validation units
        steps[0]["reward/preference/disagreement/mean"] / meta["validation_disagreement"])
    assert "reward/preference/disagreement/errors" not in steps[0]  # a series, not a signal
    assert "ensemble disagreement on the policy's samples" in proc.stdout + proc.stderr
    alarms = [r for r in read_jsonl(run_dir / "metrics.jsonl") if "hacking/disagreement_alarm" in r]
    assert [r["step"] for r in alarms] == [1]  # said once, at the crossing


def test_an_uncertainty_penalty_on_a_single_reward_model_is_refused(trained_rm, tmp_path):
    base, folder, _ = trained_rm
    proc = run_entry("train.py", tmp_path / "run", "task=math_hybrid",
                     f"reward_model.path={folder}", "trainer.max_steps=1",
                     "+task.rewards.preference.uncertainty_penalty=0.5", cache=base / "cache",
                     check=False)
    assert proc.returncode != 0
    assert "uncertainty_penalty=0.5 needs a reward-model ensemble" in proc.stderr
