"""PPO with a critic (train.py trainer=ppo): the value model's alignment, a bandit-like task on
which the critic learns to predict the return and the policy improves, a SIGKILL resume that
restores the critic and its optimizer exactly, and bad settings named."""
import math

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

from hybrid_rl.models.value import ValueModel, completion_values, critic_from_policy

TINY = dict(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64,
            max_position_embeddings=64, init_seed=0)


def test_a_completion_tokens_value_is_read_where_its_log_prob_is(tmp_path):
    """V for completion token t comes from the position before it (the state it was sampled
    from), left padding ignored; the head starts at 0 so the first values are 0."""
    from hybrid_rl.models.loading import builtin_model_folder, load_policy

    critic = critic_from_policy(load_policy(str(builtin_model_folder(TINY, tmp_path))))
    assert isinstance(critic, ValueModel) and critic.head.weight.abs().sum() == 0
    torch.nn.init.normal_(critic.head.weight)
    prompt, prompt_mask = torch.tensor([[0, 5, 6], [7, 8, 9]]), torch.tensor([[0, 1, 1], [1] * 3])
    completion, completion_mask = torch.tensor([[3, 4], [3, 0]]), torch.tensor([[1, 1], [1, 0]])
    values = completion_values(critic, prompt, prompt_mask, completion, completion_mask)
    full = critic(torch.tensor([[5, 6, 3, 4]]), torch.ones(1, 4),
                  torch.arange(4).unsqueeze(0))  # row 0 without its pad
    assert torch.allclose(values[0], full[0, 1:3], atol=1e-5)
    assert values[1, 1] == 0  # a pad position has no value


# About half of a random tiny model's completions start with a letter: the first token decides
# the reward, so once it is sampled the critic can know the return.
BANDIT = ["task.rewards.correctness.verifier={_target_:watch_helpers.starts_with_letter}",
          "trainer=ppo", "trainer.prompts_per_step=8", "trainer.num_generations=4",
          "trainer.mu=4", "trainer.learning_rate=3e-3", "trainer.critic.learning_rate=1e-3",
          "eval.every_steps=0", "logging.tensorboard=false", "checkpoint.save_final=false"]
HELPERS = {"PYTHONPATH": str(ROOT / "tests" / "helpers")}


def test_on_a_bandit_the_critic_learns_the_return_and_the_policy_improves(tmp_path):
    run_entry("train.py", tmp_path / "run", *BANDIT, "trainer.max_steps=40",
              "trainer.critic.warmup_steps=25", cache=tmp_path / "cache", env=HELPERS)
    rows = [r for r in read_jsonl(tmp_path / "run" / "metrics.jsonl") if "value_loss" in r]
    assert [r["step"] for r in rows] == list(range(1, 41))
    warm, trained = rows[:25], rows[25:]
    assert all(r["ppo/policy_trained"] == 0 and "loss" not in r for r in warm)
    assert all(r["ppo/policy_trained"] == 1 and math.isfinite(r["loss"]) for r in trained)

    def mean(key, part):
        values = [r[key] for r in part if r[key] is not None]  # NaN (None): constant returns
        return sum(values) / len(values)

    # the critic alone first: from no better than a constant to predicting much of the return
    assert mean("explained_variance", rows[:8]) < 0.1
    assert mean("explained_variance", rows[30:]) > mean("explained_variance", rows[:8]) + 0.2
    # the policy, once it trains: more completions start with a letter
    reward = "reward/total/mean"
    assert mean(reward, rows[35:]) > mean(reward, warm) + 0.15
    assert {"value_clip_fraction", "returns/mean", "kl_per_token", "approx_kl",
            "entropy"} <= set(trained[-1])


def test_sigkill_resume_restores_the_critic_exactly(tmp_path):
    extra = [*BANDIT, "trainer.max_steps=4", "trainer.critic.warmup_steps=1",
             "checkpoint.every_steps=2", "checkpoint.keep_last=5"]
    run_entry("train.py", tmp_path / "whole", *extra, cache=tmp_path / "cache", env=HELPERS)
    resumed = killed_and_resumed("train.py", tmp_path / "killed", *extra,
                                 cache=tmp_path / "cache", kill_at_step=2, total_steps=4,
                                 env=HELPERS)
    whole = rows_without_timing(tmp_path / "whole")
    assert resumed == whole and any("value_loss" in r for r in whole[2:])


@pytest.mark.parametrize("override, named", [
    ("trainer.critic.lam=1.5", "trainer.critic.lam: must be in [0, 1]"),
    ("trainer.critic.minibatches=0", "trainer.critic.minibatches"),
    ("trainer.advantage=ppo", "trainer.advantage: must be one of"),
    ("trainer.dynamic_sampling=drop", "trainer.dynamic_sampling: PPO (advantage=gae) learns"),
])
def test_bad_settings_are_named(override, named):
    assert named in config_error("config", "trainer=ppo", override)


def test_the_critic_starts_from_a_reward_model_of_the_policys_architecture(tmp_path):
    """Trunk and head copied: the critic's value at a sequence's last token is the reward
    model's score of it. Another architecture leaves the critic as it was."""
    from transformers import LlamaConfig, LlamaForSequenceClassification

    from hybrid_rl.models.loading import builtin_model_folder, load_policy
    from hybrid_rl.models.value import start_from_reward_model

    policy = load_policy(str(builtin_model_folder(TINY, tmp_path)))
    critic = critic_from_policy(policy)
    config = LlamaConfig(**{**policy.config.to_dict(), "num_labels": 1, "pad_token_id": 0})
    torch.manual_seed(1)
    reward_model = LlamaForSequenceClassification(config).eval()
    ids = torch.tensor([[5, 6, 7, 8]])
    assert start_from_reward_model(critic, reward_model)
    value = critic(ids, torch.ones(1, 4), torch.arange(4).unsqueeze(0))[0, -1]
    assert torch.allclose(value, reward_model(input_ids=ids).logits[0, 0], atol=1e-5)
    other = LlamaForSequenceClassification(LlamaConfig(
        **{**config.to_dict(), "hidden_size": 64, "intermediate_size": 128}))
    fresh = critic_from_policy(policy)
    assert not start_from_reward_model(fresh, other) and fresh.head.weight.abs().sum() == 0


def test_critic_model_names_another_folder_whose_trunk_gets_the_head(tmp_path):
    """trainer.critic.model: any Hugging Face folder's trunk (here the built-in model's)."""
    from hybrid_rl.models.loading import builtin_model_folder
    from hybrid_rl.models.value import critic_from_folder

    critic = critic_from_folder(str(builtin_model_folder(TINY, tmp_path)))
    values = completion_values(critic, torch.tensor([[5, 6]]), torch.ones(1, 2, dtype=torch.long),
                               torch.tensor([[3, 4, 0]]), torch.tensor([[1, 1, 0]]))
    assert values.shape == (1, 3) and torch.equal(values, torch.zeros(1, 3))  # head starts at 0
    assert any(p.requires_grad for p in critic.trunk.parameters())
