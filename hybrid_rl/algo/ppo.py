"""PPO's critic mathematics as pure tensor functions (ALGORITHMS.md in the design notes):
the clipped value loss and explained variance.
The advantages come from hybrid_rl/algo/advantages.py (`token_rewards`, `gae`, `whiten`).

Shapes: S completions, T completion tokens; masks are 1 on the tokens that count.
"""
from __future__ import annotations

import torch


def _masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    mask = mask.to(x.dtype)
    return (x * mask).sum() / mask.sum().clamp(min=1)


def value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor,
               mask: torch.Tensor, clip: float | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, share of tokens whose value moved past the clip): PPO2's clipped value loss
    0.5 * max((V - ret)^2, (V_old + clip(V - V_old, -c, c) - ret)^2), averaged over the active
    tokens. `clip` None: the plain squared error."""
    unclipped = (values - returns) ** 2
    if clip is None:
        return 0.5 * _masked_mean(unclipped, mask), torch.zeros(())
    moved = values - old_values
    clipped = (old_values + moved.clamp(-clip, clip) - returns) ** 2
    loss = 0.5 * _masked_mean(torch.max(unclipped, clipped), mask)
    return loss, _masked_mean((moved.abs() > clip).to(values.dtype), mask).detach()


def explained_variance(values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor) -> float:
    """1 - Var(ret - V) / Var(ret) over the active tokens: 1 is a perfect critic, 0 one no
    better than a constant, below 0 worse. NaN when the returns do not vary."""
    variance = _masked_mean((returns - _masked_mean(returns, mask)) ** 2, mask)
    error = returns - values
    error_variance = _masked_mean((error - _masked_mean(error, mask)) ** 2, mask)
    if variance.item() == 0.0:
        return float("nan")
    return float(1.0 - error_variance / variance)

