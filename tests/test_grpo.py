"""GRPO maths against values worked out by hand (see GRPO.md in the design notes)."""
import math

import pytest
import torch

from hybrid_rl.algo import grpo


def test_group_advantages_population_and_sample_std():
    r = torch.tensor([1.0, 0.0, 0.0, 1.0])
    pop = grpo.group_advantages(r, 4, "group", "population", eps=0.0)
    assert torch.allclose(pop, torch.tensor([1.0, -1.0, -1.0, 1.0]))
    sample = grpo.group_advantages(r, 4, "group", "sample", eps=0.0)
    assert torch.allclose(sample, torch.tensor([0.8660, -0.8660, -0.8660, 0.8660]), atol=1e-4)


def test_batch_scaled_and_unscaled_advantages():
    r = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 0.0])
    centred = torch.tensor([0.5, -0.5, -0.5, 0.5, 0.25, 0.25, 0.25, -0.75])
    assert torch.allclose(grpo.group_advantages(r, 4, "none"), centred)
    # population std of the 8 rewards: mean 5/8, variance 1.875/8 -> 0.484123
    batch = grpo.group_advantages(r, 4, "batch", "population", eps=0.0)
    assert torch.allclose(batch, centred / 0.4841229, atol=1e-5)


def test_equal_groups_get_zero_advantage_and_are_flagged():
    r = torch.tensor([1.0, 1.0, 0.0, 1.0, 0.0, 0.0])
    assert grpo.equal_reward_groups(r, 2).tolist() == [True, False, True]
    adv = grpo.group_advantages(r, 2)
    assert adv[0] == 0 and adv[1] == 0 and adv[4] == 0


def test_bad_advantage_arguments_are_named():
    with pytest.raises(ValueError, match="multiple of group_size"):
        grpo.group_advantages(torch.zeros(5), 2)
    with pytest.raises(ValueError, match="advantage scale"):
        grpo.group_advantages(torch.zeros(4), 2, scale="rank")


def test_kl_k3_value_and_sign():
    logp = torch.log(torch.tensor([[0.5]]))
    ref = torch.log(torch.tensor([[0.25]]))
    # d = ln 0.5; exp(d) - d - 1 = 0.5 + 0.693147 - 1
    assert torch.allclose(grpo.kl_k3(logp, ref), torch.tensor([[0.1931472]]), atol=1e-6)
    assert grpo.kl_k3(logp, logp).item() == 0.0


@pytest.mark.parametrize(
    "ratio, adv, loss, low, high", [
        (1.5, 1.0, -1.2, False, True),  # clipped at 1 + eps_high
        (1.5, -1.0, 1.5, False, False),  # pessimistic unclipped term wins, no clip
        (0.5, -1.0, 0.8, True, False),  # clipped at 1 - eps_low
        (0.5, 1.0, -0.5, False, False),
    ],
)
def test_clipped_surrogate_cases(ratio, adv, loss, low, high):
    logp = torch.log(torch.tensor([[ratio]]))
    out, lo, hi = grpo.clipped_surrogate(logp, torch.zeros(1, 1), torch.tensor([adv]), 0.2, 0.2)
    assert out.item() == pytest.approx(loss, abs=1e-6)
    assert lo.item() is low and hi.item() is high


def test_decoupled_clip_bounds():
    logp = torch.log(torch.tensor([[1.25]]))
    _, _, hi_020 = grpo.clipped_surrogate(logp, torch.zeros(1, 1), torch.tensor([1.0]), 0.2, 0.2)
    _, _, hi_028 = grpo.clipped_surrogate(logp, torch.zeros(1, 1), torch.tensor([1.0]), 0.2, 0.28)
    assert hi_020.item() and not hi_028.item()


def _ratio_one_case():
    # S=2 sequences, T=3 tokens; mask lengths 2 and 3; A = [1, -2] -> L_tok = -A per token.
    logp = torch.full((2, 3), -1.0, requires_grad=True)
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    return logp, mask, torch.tensor([1.0, -2.0])


@pytest.mark.parametrize(
    "loss_type, scale, expected", [
        ("grpo", grpo.LossScale(2, 5, 4), (-1 + 2) / 2),  # per-sequence means -1 and 2
        ("bnpo", grpo.LossScale(2, 5, 4), 4 / 5),  # masked sum 4 over 5 local tokens
        ("dapo", grpo.LossScale(2, 10, 4), 4 / 10),  # over the step's 10 tokens
        ("dr_grpo", grpo.LossScale(2, 5, 4), 4 / (2 * 4)),  # over sequences x max length
    ],
)
def test_loss_aggregations(loss_type, scale, expected):
    logp, mask, adv = _ratio_one_case()
    loss, stats = grpo.policy_loss(
        logp, logp.detach(), None, adv, mask, loss_type=loss_type, scale=scale
    )
    assert loss.item() == pytest.approx(expected)
    assert stats["active_tokens"].item() == 5


def test_ratio_one_gives_zero_loss_but_nonzero_gradient():
    logp = torch.zeros(4, 1, requires_grad=True)
    adv = grpo.group_advantages(
        torch.tensor([1.0, 0.0, 0.0, 1.0]), 4, std_estimator="population", eps=0.0
    )
    loss, _ = grpo.policy_loss(logp, logp.detach(), None, adv, torch.ones(4, 1), loss_type="grpo",
                               scale=grpo.LossScale(4, 4, 1))
    loss.backward()
    assert loss.item() == pytest.approx(0.0)
    # d/dlogp of -ratio*A/4 at ratio 1 is -A/4
    assert torch.allclose(logp.grad.squeeze(1), -adv / 4)


def test_clipped_tokens_get_no_gradient():
    logp = torch.log(torch.tensor([[1.5]])).requires_grad_(True)
    loss, stats = grpo.policy_loss(
        logp,
        torch.zeros(1, 1),
        None,
        torch.tensor([1.0]),
        torch.ones(1, 1),
        loss_type="grpo",
        scale=grpo.LossScale(1, 1, 1),
    )
    loss.backward()
    assert logp.grad.item() == 0.0 and stats["clip_high_tokens"].item() == 1


def test_kl_term_is_added_with_beta():
    logp = torch.log(torch.tensor([[0.5]]))
    ref = torch.log(torch.tensor([[0.25]]))
    loss, stats = grpo.policy_loss(logp, logp, ref, torch.tensor([0.0]), torch.ones(1, 1),
                                   loss_type="grpo", scale=grpo.LossScale(1, 1, 1), beta=0.1)
    assert loss.item() == pytest.approx(0.1 * 0.1931472, abs=1e-6)
    assert stats["kl_sum"].item() == pytest.approx(0.1931472, abs=1e-6)
    with pytest.raises(ValueError, match="reference"):
        grpo.policy_loss(logp, logp, None, torch.tensor([0.0]), torch.ones(1, 1), loss_type="grpo",
                         scale=grpo.LossScale(1, 1, 1), beta=0.1)


@pytest.mark.parametrize("loss_type", ["grpo", "dapo", "dr_grpo"])
def test_micro_batches_give_the_full_batch_gradient(loss_type):
    torch.manual_seed(0)
    base = torch.randn(6, 5)
    mask = (torch.rand(6, 5) > 0.3).float()
    adv = torch.randn(6)
    old = base + 0.1 * torch.randn(6, 5)
    scale = grpo.LossScale(6, int(mask.sum()), 5, num_microbatches=3)

    full = base.clone().requires_grad_(True)
    grpo.policy_loss(full, old, None, adv, mask, loss_type=loss_type, scale=scale)[0].backward()
    split = base.clone().requires_grad_(True)
    for s in (slice(0, 2), slice(2, 4), slice(4, 6)):
        grpo.policy_loss(split[s], old[s], None, adv[s], mask[s], loss_type=loss_type,
                         scale=scale)[0].backward()
    assert torch.allclose(full.grad, split.grad, atol=1e-6)


def test_entropy_of_uniform_and_peaked():
    def entropy(logits):
        return grpo.entropy_of_log_softmax(torch.log_softmax(logits, -1)).item()

    assert entropy(torch.zeros(1, 1, 4)) == pytest.approx(math.log(4))  # uniform
    assert entropy(torch.tensor([[[100.0, 0.0, 0.0]]])) == pytest.approx(0.0, abs=1e-6)  # peaked


def test_truncated_importance_weights_cap():
    w = grpo.truncated_importance_weights(
        torch.tensor([0.0, 1.0]), torch.tensor([0.0, 0.0]), cap=2.0
    )
    assert torch.allclose(w, torch.tensor([1.0, 2.0]))
