"""Offline preference losses on the policy (dpo.py): chosen w against rejected l.

Each loss is a pure function of the sequences' summed log-probs under the policy (and, for
the reference-based ones, the frozen reference) and their lengths in tokens; it returns one
loss per pair. With h = (logP(w) - logP_ref(w)) - (logP(l) - logP_ref(l)):
- dpo:   -(1 - e) log sigma(beta h) - e log sigma(-beta h); e = label_smoothing (cDPO: the
         labels of a share e of the pairs are assumed flipped; e = 0 is plain DPO);
- ipo:   (h' - 1 / (2 beta))^2, with h' taken on per-token mean log-probs (as TRL does: a sum
         over tokens would make the target margin depend on length);
- simpo: -log sigma(beta logP(w) / |w| - beta logP(l) / |l| - gamma), no reference;
- orpo:  NLL(w) / |w| + lambda * -log sigma(log odds(w) - log odds(l)), no reference, with
         P(o) = exp(logP(o) / |o|) and odds(o) = P(o) / (1 - P(o)).
Definitions: ../shared/ALGORITHMS.md "Offline preference losses" in the project brief.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class PairLogprobs:
    """Summed log-probs of each pair's chosen and rejected completion, and their lengths."""

    chosen: torch.Tensor  # [N] policy
    rejected: torch.Tensor  # [N] policy
    chosen_len: torch.Tensor  # [N] tokens
    rejected_len: torch.Tensor  # [N] tokens
    ref_chosen: torch.Tensor | None = None  # [N] reference (None for reference-free losses)
    ref_rejected: torch.Tensor | None = None


@dataclass(frozen=True)
class LossSettings:
    beta: float = 0.1
    label_smoothing: float = 0.0  # dpo: assumed share of flipped labels (cDPO)
    simpo_gamma: float = 0.5  # simpo: the target margin
    orpo_lambda: float = 0.1  # orpo: weight of the odds-ratio term


def dpo(p: PairLogprobs, s: LossSettings) -> torch.Tensor:
    h = (p.chosen - p.ref_chosen) - (p.rejected - p.ref_rejected)
    e = s.label_smoothing
    return -(1 - e) * F.logsigmoid(s.beta * h) - e * F.logsigmoid(-s.beta * h)


def ipo(p: PairLogprobs, s: LossSettings) -> torch.Tensor:
    h = ((p.chosen - p.ref_chosen) / p.chosen_len
         - (p.rejected - p.ref_rejected) / p.rejected_len)
    return (h - 1 / (2 * s.beta)) ** 2


def simpo(p: PairLogprobs, s: LossSettings) -> torch.Tensor:
    margin = s.beta * p.chosen / p.chosen_len - s.beta * p.rejected / p.rejected_len
    return -F.logsigmoid(margin - s.simpo_gamma)


def _log_odds(logp_mean: torch.Tensor) -> torch.Tensor:
    """log(P / (1 - P)) with P = exp(logp_mean), stable as P -> 1 (log1p(-exp(x)) for x < 0)."""
    return logp_mean - torch.log1p(-torch.exp(logp_mean.clamp(max=-1e-6)))


def orpo(p: PairLogprobs, s: LossSettings) -> torch.Tensor:
    chosen_mean, rejected_mean = p.chosen / p.chosen_len, p.rejected / p.rejected_len
    ratio = -F.logsigmoid(_log_odds(chosen_mean) - _log_odds(rejected_mean))
    return -chosen_mean + s.orpo_lambda * ratio


LOSSES: dict[str, Callable[[PairLogprobs, LossSettings], torch.Tensor]] = {
    "dpo": dpo, "ipo": ipo, "simpo": simpo, "orpo": orpo,
}
REFERENCE_FREE = frozenset({"simpo", "orpo"})


def implicit_rewards(p: PairLogprobs, beta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """beta (logP(o) - logP_ref(o)) of chosen and rejected (reference-free losses: beta logP(o)
    / |o|, the reward they optimise)."""
    if p.ref_chosen is None:
        return beta * p.chosen / p.chosen_len, beta * p.rejected / p.rejected_len
    return beta * (p.chosen - p.ref_chosen), beta * (p.rejected - p.ref_rejected)
