"""The offline preference losses of dpo.py against values worked out by hand."""
import math

import pytest
import torch

from hybrid_rl.algo.preference import (
    LOSSES,
    LossSettings,
    PairLogprobs,
    implicit_rewards,
)

# One pair: chosen 2 tokens, logP -2.0 (reference -2.5); rejected 4 tokens, logP -3.0
# (reference -2.5). So h = (-2 + 2.5) - (-3 + 2.5) = 1.0.
PAIR = PairLogprobs(chosen=torch.tensor([-2.0]), rejected=torch.tensor([-3.0]),
                    chosen_len=torch.tensor([2.0]), rejected_len=torch.tensor([4.0]),
                    ref_chosen=torch.tensor([-2.5]), ref_rejected=torch.tensor([-2.5]))


@pytest.mark.parametrize("name, settings, expected", [
    # -log sigma(0.1 * 1) = log(1 + e^-0.1)
    ("dpo", LossSettings(beta=0.1), 0.6443967),
    # cDPO: 0.8 * 0.6443967 + 0.2 * log(1 + e^0.1) = 0.6443967 + 0.2 * 0.1
    ("dpo", LossSettings(beta=0.1, label_smoothing=0.2), 0.6643967),
    # per-token means: h' = 0.5 / 2 - (-0.5) / 4 = 0.375; (0.375 - 1 / 0.2)^2
    ("ipo", LossSettings(beta=0.1), 21.390625),
    # 2 * (-2 / 2) - 2 * (-3 / 4) - 1 = -1.5; -log sigma(-1.5) = log(1 + e^1.5)
    ("simpo", LossSettings(beta=2.0, simpo_gamma=1.0), 1.7014133),
    # mean log-probs -1 and -0.75; log odds m - log(1 - e^m): -0.5413249 and -0.1106465;
    # NLL 1 + 0.1 * log(1 + e^0.4306784)
    ("orpo", LossSettings(orpo_lambda=0.1), 1.0931495),
])
def test_each_loss_matches_the_hand_computed_value(name, settings, expected):
    assert LOSSES[name](PAIR, settings).item() == pytest.approx(expected, abs=1e-5)


def test_dpo_falls_as_the_chosen_pulls_ahead_and_has_the_right_gradient():
    chosen = torch.tensor([-2.0], requires_grad=True)
    pair = PairLogprobs(chosen, torch.tensor([-3.0]), torch.tensor([2.0]), torch.tensor([4.0]),
                        torch.tensor([-2.5]), torch.tensor([-2.5]))
    loss = LOSSES["dpo"](pair, LossSettings(beta=0.1))
    loss.backward()
    # d/dx -log sigma(beta h) = -beta * sigma(-beta h) = -0.1 * sigma(-0.1)
    assert chosen.grad.item() == pytest.approx(-0.1 / (1 + math.exp(0.1)), abs=1e-6)


def test_reference_free_losses_need_no_reference():
    free = PairLogprobs(PAIR.chosen, PAIR.rejected, PAIR.chosen_len, PAIR.rejected_len)
    assert LOSSES["simpo"](free, LossSettings(beta=2.0, simpo_gamma=1.0)).item() == pytest.approx(
        1.7014133, abs=1e-5)
    assert torch.isfinite(LOSSES["orpo"](free, LossSettings()))


def test_orpo_log_odds_stay_finite_when_a_completion_is_certain():
    certain = PairLogprobs(torch.tensor([0.0]), torch.tensor([-5.0]), torch.tensor([3.0]),
                           torch.tensor([3.0]))
    assert torch.isfinite(LOSSES["orpo"](certain, LossSettings())).all()


def test_implicit_rewards_by_hand():
    chosen, rejected = implicit_rewards(PAIR, beta=0.1)
    assert chosen.item() == pytest.approx(0.05) and rejected.item() == pytest.approx(-0.05)
    free = PairLogprobs(PAIR.chosen, PAIR.rejected, PAIR.chosen_len, PAIR.rejected_len)
    chosen, rejected = implicit_rewards(free, beta=2.0)
    assert chosen.item() == pytest.approx(-2.0) and rejected.item() == pytest.approx(-1.5)
