"""Bradley-Terry loss and the numbers that say how good a reward model is. Pure torch.

P(chosen > rejected) = sigmoid(r_chosen - r_rejected); the loss is its negative log.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F


def bradley_terry_loss(
    r_chosen: torch.Tensor,  # [P] scores of the preferred responses
    r_rejected: torch.Tensor,  # [P] scores of the other responses
    margin: Optional[torch.Tensor] = None,  # [P] or scalar: how much higher chosen must score
    center_coef: float = 0.0,
    label: Optional[torch.Tensor] = None,  # [P] P(chosen is preferred); None: all 1
) -> torch.Tensor:
    """mean(-log sigmoid(d)) + center_coef * mean((r_c + r_r)^2), d = r_c - r_r - margin; with
    soft labels l the cross-entropy -(l log sigmoid(d) + (1 - l) log sigmoid(-d)) instead.

    The margin (Llama 2) asks for a wider gap on clearly separated pairs; the centring term
    (as in TRL's center_rewards_coefficient) keeps scores near zero, since Bradley-Terry only
    fixes differences. logsigmoid is used directly: it stays finite for large gaps."""
    diff = r_chosen - r_rejected
    if margin is not None:
        diff = diff - margin
    if label is None:
        loss = -F.logsigmoid(diff).mean()
    else:
        loss = -(label * F.logsigmoid(diff) + (1 - label) * F.logsigmoid(-diff)).mean()
    if center_coef:
        loss = loss + center_coef * ((r_chosen + r_rejected) ** 2).mean()
    return loss


def expected_calibration_error(prob_chosen: torch.Tensor, num_bins: int = 10) -> float:
    """ECE of the model's stated confidence. For each pair the model predicts the side it
    scores higher, with confidence max(p, 1 - p) where p = sigmoid(r_c - r_r); pairs are binned
    by confidence over [0.5, 1] and
    ECE = sum over bins of (share of pairs) * |accuracy - mean confidence|."""
    if len(prob_chosen) == 0:
        return float("nan")
    confidence = torch.maximum(prob_chosen, 1 - prob_chosen)
    correct = (prob_chosen > 0.5).float()
    edges = torch.linspace(0.5, 1.0, num_bins + 1)
    bins = torch.bucketize(confidence, edges[1:-1], right=False)  # [P] in 0..num_bins-1
    ece = 0.0
    for b in range(num_bins):
        in_bin = bins == b
        if in_bin.any():
            ece += in_bin.float().mean().item() * abs(
                correct[in_bin].mean().item() - confidence[in_bin].mean().item()
            )
    return ece


def pairwise_metrics(r_chosen: torch.Tensor, r_rejected: torch.Tensor,
                     flipped: Optional[torch.Tensor] = None) -> dict:
    """accuracy (share of pairs where chosen scores higher; a tie counts 1/2), mean margin,
    ECE; and, when `flipped` marks pairs whose label noise swapped them, accuracy against the
    clean labels (noisy labels cap the plain accuracy at 1 - noise even for a perfect model)."""
    diff = (r_chosen - r_rejected).float()
    right = (diff > 0).float() + 0.5 * (diff == 0).float()
    out = {
        "accuracy": right.mean().item(), "mean_margin": diff.mean().item(),
        "ece": expected_calibration_error(torch.sigmoid(diff)), "pairs": len(diff),
    }
    if flipped is not None:
        out["accuracy_clean"] = torch.where(flipped, 1 - right, right).mean().item()
    return out
