"""Advantage estimators (hybrid_rl/algo/advantages.py) and GSPO's sequence ratio against
values computed by hand (ALGORITHMS.md)."""
import math

import pytest
import torch

from hybrid_rl.algo import grpo
from hybrid_rl.algo.advantages import (
    ESTIMATORS,
    AdvantageInputs,
    AdvantageSettings,
    gae,
    per_completion,
    returns_to_go,
    rloo,
    token_rewards,
    whiten,
)


def test_rloo_subtracts_the_mean_of_the_other_completions():
    a = rloo(torch.tensor([3.0, 0.0, 0.0, 1.0, 1.0, 1.0]), 3)
    # 3 - (0+0)/2 = 3; 0 - (3+0)/2 = -1.5; an all-equal group gets 0
    assert a.tolist() == [3.0, -1.5, -1.5, 0.0, 0.0, 0.0]
    # = G/(G-1) times GRPO's centred reward
    centred = grpo.group_advantages(torch.tensor([3.0, 0.0, 0.0]), 3, scale="none")
    assert torch.allclose(a[:3], 1.5 * centred)


# two completions: 3 tokens, and 2 tokens then padding
MASK = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
OLD = torch.tensor([[-1.0, -2.0, -1.0], [-1.0, -1.0, 0.0]])
REF = torch.tensor([[-1.5, -2.0, -0.5], [-1.0, -3.0, 0.0]])
REWARDS = torch.tensor([2.0, -1.0])


def test_token_rewards_put_the_kl_on_every_token_and_the_reward_on_the_last():
    r = token_rewards(REWARDS, MASK, OLD, REF, kl_coef=0.5)
    # -0.5 * (old - ref): [-0.25, 0, 0.25] and [0, -1, (pad)]; + R at the last token
    assert r.tolist() == [[-0.25, 0.0, 2.25], [0.0, -2.0, 0.0]]
    assert returns_to_go(r, MASK).tolist() == [[2.0, 2.25, 2.25], [-2.0, -2.0, 0.0]]
    assert token_rewards(REWARDS, MASK).tolist() == [[0, 0, 2.0], [0, -1.0, 0]]  # no KL


def test_reinforce_pp_whitens_the_returns_over_every_token_of_the_batch():
    inputs = AdvantageInputs(REWARDS, 2, MASK, OLD, REF)
    a = ESTIMATORS["reinforce_pp"](inputs, AdvantageSettings(eps=0.0, kl_coef=0.5))
    # active returns 2, 2.25, 2.25, -2, -2: mean 0.5, population variance 20.875 / 5
    std = math.sqrt(20.875 / 5)
    want = [[1.5 / std, 1.75 / std, 1.75 / std], [-2.5 / std, -2.5 / std, 0.0]]
    assert torch.allclose(a, torch.tensor(want))
    # the baseline variant: R minus the group's mean (0.5) -> 1.5 and -1.5 before the KL
    b = ESTIMATORS["reinforce_pp_baseline"](inputs, AdvantageSettings(eps=0.0, kl_coef=0.5))
    returns = torch.tensor([[1.5, 1.75, 1.75], [-2.5, -2.5, 0.0]])
    assert torch.allclose(b, whiten(returns, MASK, 0.0))
    assert torch.allclose(per_completion(b, MASK), (b * MASK).sum(1) / MASK.sum(1))


def test_whitening_counts_every_process_through_total():
    """Two processes with the same tokens: the sums double, the statistics stay the same."""
    x = torch.tensor([[1.0, 3.0, 0.0]])
    m = torch.tensor([[1.0, 1.0, 0.0]])
    assert whiten(x, m, 0.0, total=lambda v: 2 * v).tolist() == [[-1.0, 1.0, 0.0]]


def test_gae_with_lambda_and_gamma_one_and_zero_values_is_the_plain_return():
    r = token_rewards(REWARDS, MASK, OLD, REF, kl_coef=0.5)
    adv, ret = gae(r, torch.zeros_like(r), MASK, gamma=1.0, lam=1.0)
    assert torch.equal(adv, returns_to_go(r, MASK)) and torch.equal(ret, adv)


def test_gae_by_hand():
    r = torch.tensor([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    v = torch.tensor([[0.5, 0.5, 0.5], [0.5, 0.5, 9.0]])  # 9: a pad, ignored
    adv, ret = gae(r, v, MASK, gamma=1.0, lam=0.5)
    # row 0: deltas 0, 0, 0.5 -> A = 0.125, 0.25, 0.5; row 1: deltas 0, 0.5 -> A = 0.25, 0.5
    assert torch.allclose(adv, torch.tensor([[0.125, 0.25, 0.5], [0.25, 0.5, 0.0]]))
    assert torch.allclose(ret, torch.tensor([[0.625, 0.75, 1.0], [0.75, 1.0, 0.0]]))
    adv, _ = gae(r, v, MASK, gamma=0.5, lam=1.0)  # delta_0 = 0 + 0.5 * 0.5 - 0.5 = -0.25
    assert torch.allclose(adv[1], torch.tensor([-0.25 + 0.5 * 0.5, 0.5, 0.0]))


def test_grpo_estimator_is_the_group_advantage():
    rewards = torch.tensor([1.0, 0.0, 0.0, 0.0])
    inputs = AdvantageInputs(rewards, 2, torch.ones(4, 1))
    assert torch.equal(ESTIMATORS["grpo"](inputs, AdvantageSettings(scale="none")),
                       torch.tensor([0.5, -0.5, 0.0, 0.0]))


LOGP = torch.tensor([[-1.0, -2.0], [-1.0, 0.0]])
SAMPLED = torch.tensor([[-1.2, -1.6], [-1.1, 5.0]])  # 5.0: under a pad
PAIR_MASK = torch.tensor([[1.0, 1.0], [1.0, 0.0]])


def test_sequence_ratio_is_the_geometric_mean_with_each_tokens_gradient():
    logp = LOGP.clone().requires_grad_(True)
    ratio = grpo.importance_ratio(logp, SAMPLED, PAIR_MASK, "sequence")
    s0, s1 = math.exp((0.2 - 0.4) / 2), math.exp(0.1)  # the pad's ratio does not count
    assert torch.allclose(ratio, torch.tensor([[s0, s0], [s1, s1]]))
    ratio[0, 0].backward()
    assert torch.allclose(logp.grad, torch.tensor([[s0, 0.0], [0.0, 0.0]]))  # its own token


def test_sequence_clip_binds_per_completion():
    loss, low, high = grpo.clipped_surrogate(LOGP, SAMPLED, torch.tensor([-1.0, 1.0]), 0.05, 0.05,
                                             PAIR_MASK, "sequence")
    # s0 = 0.905 < 0.95 with A < 0: clipped to 0.95; s1 = 1.105 > 1.05 with A > 0: to 1.05
    assert torch.allclose(loss, torch.tensor([[0.95, 0.95], [-1.05, -1.05]]))
    assert low[0].all() and not low[1].any() and high[1].all() and not high[0].any()
    token, _, _ = grpo.clipped_surrogate(LOGP, SAMPLED, torch.tensor([-1.0, 1.0]), 0.05, 0.05)
    # per token, A = -1: ratio 1.22 counts in full (the pessimistic side), 0.67 is clipped
    assert torch.allclose(token[0], torch.tensor([math.exp(0.2), 0.95]))


def test_per_token_advantages_enter_the_loss_token_by_token():
    adv = torch.tensor([[1.0, -2.0], [0.5, 0.0]])
    loss, _, _ = grpo.clipped_surrogate(SAMPLED, SAMPLED, adv, 0.2, 0.2)  # ratio 1
    assert torch.equal(loss, -adv)


@pytest.mark.parametrize("bad", [{"advantage": "ppo"}, {"importance_level": "seq"}])
def test_unknown_estimator_or_level_is_named(bad):
    from hybrid_rl.config.trainer import TrainerConfig

    problems = list(TrainerConfig(**bad).problems())
    assert len(problems) == 1 and problems[0].startswith(next(iter(bad)))


TINY = dict(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64,
            max_position_embeddings=64, init_seed=0)


@pytest.mark.parametrize("estimator, level", [("grpo", "token"), ("rloo", "token"),
                                              ("reinforce_pp", "token"),
                                              ("reinforce_pp_baseline", "token"),
                                              ("grpo", "sequence")])
def test_each_estimator_moves_the_policy_toward_the_rewarded_answers(tmp_path, estimator, level):
    """One real update of the tiny model: the rewarded completions gain log-probability
    against the rest (REINFORCE++ with its KL reward: the policy is still the reference)."""
    from hybrid_rl.algo.logprobs import completion_logprobs
    from hybrid_rl.algo.optim import make_optimizer, make_scheduler
    from hybrid_rl.algo.update import UpdateSettings, grpo_update, reference_logprobs
    from hybrid_rl.models.loading import builtin_model_folder, load_policy, load_tokenizer
    from hybrid_rl.rollout import build_backend
    from hybrid_rl.runtime.engine import TorchEngine

    folder = builtin_model_folder(TINY, tmp_path)
    model, tok = load_policy(str(folder)), load_tokenizer(str(folder))
    torch.manual_seed(0)
    batch = build_backend("hf", model, tok, max_new_tokens=4).generate(["1+2=", "30-4="], n=4)
    settings = UpdateSettings("dapo", 0.2, 0.2, 0.0, 1, 8, 4, 1.0, False,
                              importance_level=level)

    def sequence_logprobs():
        with torch.no_grad():
            logp = completion_logprobs(model, batch.prompt_ids, batch.prompt_mask,
                                       batch.completion_ids, batch.completion_mask).full
        return (logp * batch.completion_mask).sum(1)

    rewarded = torch.tensor([1.0, 0, 0, 0, 0, 1, 0, 0])
    logp = reference_logprobs(model, batch, settings)  # policy == reference: KL reward 0
    inputs = AdvantageInputs(rewarded, 4, batch.completion_mask, logp, logp)
    adv = ESTIMATORS[estimator](inputs, AdvantageSettings(kl_coef=0.1))
    before = sequence_logprobs()
    opt = make_optimizer(model, 1e-2, 0.0)
    grpo_update(TorchEngine(model, opt, make_scheduler(opt, "constant", 0, 10), 1.0), None,
                batch, adv, settings)
    gain = sequence_logprobs() - before
    assert gain[rewarded == 1].mean() > gain[rewarded == 0].mean()


def test_value_loss_clips_the_move_from_the_old_values():
    from hybrid_rl.algo.ppo import value_loss

    values = torch.tensor([[1.0, 0.0], [0.5, 9.0]])
    old = torch.tensor([[0.0, 0.0], [0.0, 0.0]])
    returns = torch.tensor([[2.0, 1.0], [0.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    loss, clipped = value_loss(values, old, returns, mask, clip=0.2)
    # token 1: max((1-2)^2, (0.2-2)^2) = 3.24; token 2: max(1, 1) = 1; token 3: max(0.25, 0.04)
    assert torch.isclose(loss, torch.tensor(0.5 * (3.24 + 1.0 + 0.25) / 3))
    assert torch.isclose(clipped, torch.tensor(2 / 3))  # 1.0 and 0.5 moved more than 0.2
    plain, _ = value_loss(values, old, returns, mask, clip=None)
    assert torch.isclose(plain, torch.tensor(0.5 * (1.0 + 1.0 + 0.25) / 3))


def test_explained_variance():
    from hybrid_rl.algo.ppo import explained_variance

    returns = torch.tensor([[1.0, 3.0], [5.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    assert explained_variance(returns, returns, mask) == 1.0
    assert explained_variance(torch.zeros(2, 2) + 3.0, returns, mask) == 0.0  # a constant
    # errors 1, -1, 0 (variance 2/3) against returns 1, 3, 5 (variance 8/3): 1 - 1/4
    assert math.isclose(explained_variance(returns + torch.tensor([[-1.0, 1.0], [0, 0]]),
                                           returns, mask), 0.75, rel_tol=1e-6)
    assert math.isnan(explained_variance(returns, torch.ones(2, 2), mask))
