"""Bradley-Terry loss, calibration and pairwise metrics against values worked out by hand."""
import math

import pytest
import torch

from hybrid_rl.rewards.learned.loss import (
    bradley_terry_loss,
    expected_calibration_error,
    pairwise_metrics,
)


def softplus(x):  # -log sigmoid(d) = log(1 + e^-d)
    return math.log1p(math.exp(-x))


def test_loss_is_the_mean_negative_log_sigmoid_of_the_gap():
    loss = bradley_terry_loss(torch.tensor([2.0, 0.0]), torch.tensor([0.0, 0.0]))
    assert loss.item() == pytest.approx((0.126928 + 0.693147) / 2, abs=1e-6)
    assert loss.item() == pytest.approx((softplus(2) + softplus(0)) / 2, abs=1e-7)


def test_margin_asks_for_a_wider_gap():
    loss = bradley_terry_loss(torch.tensor([2.0, 0.0]), torch.tensor([0.0, 0.0]),
                              margin=torch.tensor([1.0, 1.0]))
    assert loss.item() == pytest.approx((0.313262 + 1.313262) / 2, abs=1e-6)  # gaps 1 and -1


def test_centring_adds_the_mean_squared_sum():
    plain = bradley_terry_loss(torch.tensor([2.0, 0.0]), torch.tensor([0.0, 0.0]))
    centred = bradley_terry_loss(
        torch.tensor([2.0, 0.0]), torch.tensor([0.0, 0.0]), center_coef=0.1
    )
    assert (centred - plain).item() == pytest.approx(0.1 * (4 + 0) / 2, abs=1e-6)


def test_large_gaps_stay_finite_and_the_gradient_is_right():
    assert bradley_terry_loss(torch.tensor([1000.0]),
                              torch.tensor([0.0])).item() == pytest.approx(0.0, abs=1e-6)
    assert bradley_terry_loss(torch.tensor([0.0]),
                              torch.tensor([1000.0])).item() == pytest.approx(1000.0)
    rc = torch.tensor([0.5], requires_grad=True)
    bradley_terry_loss(rc, torch.tensor([0.0])).backward()
    # -(1 - sigmoid(gap))
    assert rc.grad.item() == pytest.approx(-(1 - 1 / (1 + math.exp(-0.5))), abs=1e-6)


def test_ece_by_hand():
    # confidences 0.92, 0.92 (both right) and 0.62, 0.62 (one right): 0.5*0.08 + 0.5*0.12
    p = torch.tensor([0.92, 0.92, 0.62, 0.38])
    assert expected_calibration_error(p) == pytest.approx(0.10, abs=1e-6)
    # sure and right
    assert expected_calibration_error(torch.tensor([1.0, 1.0])) == pytest.approx(0.0)


def test_pairwise_metrics_count_ties_as_half_and_report_clean_accuracy():
    m = pairwise_metrics(torch.tensor([1.0, 0.0, 2.0, 0.0]), torch.tensor([0.0, 0.0, 3.0, 1.0]),
                         flipped=torch.tensor([False, False, True, True]))
    assert m["accuracy"] == pytest.approx((1 + 0.5 + 0 + 0) / 4)
    # flipped pairs judged by the clean label
    assert m["accuracy_clean"] == pytest.approx((1 + 0.5 + 1 + 1) / 4)
    assert m["mean_margin"] == pytest.approx((1 + 0 - 1 - 1) / 4) and m["pairs"] == 4
