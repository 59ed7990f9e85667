"""How each task's reward signals become one reward per completion.

Per signal and per task, in this order:
1. gate: where the gating signal (say `correctness`) is below its threshold or has no opinion,
   this signal has no opinion either (None): "the preference counts only when the answer is right";
2. normalise the applicable values: none, per-group z-score (the G completions of one prompt),
   or running z-score (mean/std over every value seen so far in this run, per task and signal);
3. multiply by the task's weight and add. A signal with no opinion adds nothing.
A gated signal's weighted values are then shifted within each group so that the lowest one is
0: it only ever adds to the samples that passed its gate, so for any weight and any scores it
never puts a sample that failed the gate above one that passed (the ranking among the passing
samples is kept).

Each sample is routed by its own task name, so a batch that mixes tasks needs no special case.
Pure torch; the rules are plain arguments built from the task configs by hybrid_rl/recipes/build.py.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

import torch

NORMALIZATIONS = ("none", "group", "running")


@dataclass(frozen=True)
class SignalRule:
    """How one signal of one task enters the summed reward."""

    weight: float = 1.0
    normalize: str = "none"  # none | group | running
    gate: Optional[str] = None  # another signal of the task that must pass for this one to count
    gate_min: float = 1.0  # the gating signal passes at or above this value

    def passes_gate(self, gate_value: Optional[float]) -> bool:
        """Whether a sample's gating-signal score lets this signal count (None: no opinion)."""
        return gate_value is not None and gate_value >= self.gate_min

    def __post_init__(self):
        if self.normalize not in NORMALIZATIONS:
            raise ValueError(f"normalize must be one of {NORMALIZATIONS}, got {self.normalize!r}")


class RunningMoments:
    """Mean and variance of every value seen so far (Chan et al.'s parallel update)."""

    def __init__(self, count: float = 0.0, mean: float = 0.0, m2: float = 0.0):
        self.count, self.mean, self.m2 = count, mean, m2

    def update(self, values: torch.Tensor) -> None:
        n = float(len(values))
        if n == 0:
            return
        batch_mean = values.mean().item()
        batch_m2 = ((values - batch_mean) ** 2).sum().item()
        delta, total = batch_mean - self.mean, self.count + n
        self.mean += delta * n / total
        self.m2 += batch_m2 + delta**2 * self.count * n / total
        self.count = total

    @property
    def std(self) -> float:
        return math.sqrt(self.m2 / (self.count - 1)) if self.count > 1 else 0.0


def _group_zscore(values: torch.Tensor, group_size: int, eps: float) -> torch.Tensor:
    """[N] -> [N]: z-score within each group of group_size over its non-NaN entries; a group
    with fewer than two applicable values, or all equal, gets 0 (it says nothing relative)."""
    groups = values.view(-1, group_size)  # [B, G]
    present = ~torch.isnan(groups)
    count = present.sum(1, keepdim=True)  # [B, 1]
    filled = torch.where(present, groups, torch.zeros_like(groups))
    mean = filled.sum(1, keepdim=True) / count.clamp(min=1)
    var = (torch.where(present, groups - mean, torch.zeros_like(groups)) ** 2).sum(
        1, keepdim=True
    ) / (count - 1).clamp(min=1)
    z = (groups - mean) / (var.sqrt() + eps)
    # equal values give exactly 0 (the float mean of equal values can miss them by an ulp)
    spread = (torch.where(present, groups, -math.inf).amax(1, keepdim=True)
              - torch.where(present, groups, math.inf).amin(1, keepdim=True))
    z = torch.where((count >= 2) & (spread > 0), z, torch.zeros_like(z))
    return torch.where(present, z, groups).view(-1)


class RewardComposer:
    """`rules[task][signal]` -> summed rewards; keeps the running moments of `running` signals."""

    def __init__(self, rules: dict[str, dict[str, SignalRule]], eps: float = 1e-4):
        self.rules = rules
        self.eps = eps
        self.moments: dict[str, RunningMoments] = {}  # "task/signal" -> running moments
        for task, signals in rules.items():
            for name, rule in signals.items():
                if rule.gate is not None and rule.gate not in signals:
                    raise ValueError(f"task {task!r}: signal {name!r} is gated on {rule.gate!r}, "
                                     "which the task does not have")
                if rule.gate == name:
                    raise ValueError(f"task {task!r}: signal {name!r} cannot gate itself")

    def combine(
        self, values: dict[str, Sequence[Optional[float]]], tasks: Sequence[str], group_size: int,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(total [N], signal -> its weighted contribution [N]). `values[signal]` has one score
        (or None) per sample; samples come in contiguous groups of group_size of one task."""
        n = len(tasks)
        if n % group_size:
            raise ValueError(f"{n} samples do not split into groups of {group_size}")
        raw = {name: _as_tensor(v) for name, v in values.items()}
        total = torch.zeros(n)
        parts = {}
        for name in raw:
            if not any(name in rules for rules in self.rules.values()):
                continue  # a series the reward does not use (an ensemble's disagreement)
            part = torch.zeros(n)
            for task in sorted(set(tasks)):
                rule = self.rules.get(task, {}).get(name)
                if rule is None or rule.weight == 0:
                    continue
                rows = torch.tensor([t == task for t in tasks])
                x = torch.where(rows, self._gated(raw, name, rule), torch.full((n,), math.nan))
                x = self._normalized(x, rows, f"{task}/{name}", rule.normalize, group_size)
                x = x * rule.weight
                if rule.gate is not None:
                    x = _floor_at_zero(x, group_size)
                part += torch.where(torch.isnan(x), torch.zeros(n), x)
            parts[name] = part
            total += part
        return total, parts

    def _gated(self, raw: dict[str, torch.Tensor], name: str, rule: SignalRule) -> torch.Tensor:
        x = raw[name]
        if rule.gate is None:
            return x
        gate = raw.get(rule.gate)
        if gate is None:  # the gating signal produced nothing in this batch
            return torch.full_like(x, math.nan)
        # rule.passes_gate, for a whole batch (NaN is no opinion)
        passed = ~torch.isnan(gate) & (torch.nan_to_num(gate, nan=-math.inf) >= rule.gate_min)
        return torch.where(passed, x, torch.full_like(x, math.nan))

    def _normalized(self, x: torch.Tensor, rows: torch.Tensor, key: str, how: str,
                    group_size: int) -> torch.Tensor:
        if how == "group":
            return _group_zscore(x, group_size, self.eps)
        if how == "running":
            moments = self.moments.setdefault(key, RunningMoments())
            moments.update(x[~torch.isnan(x)])
            return (x - moments.mean) / (moments.std + self.eps)
        return x

    def state_dict(self) -> dict:
        return {k: [m.count, m.mean, m.m2] for k, m in self.moments.items()}

    def load_state_dict(self, state: dict) -> None:
        self.moments = {k: RunningMoments(*v) for k, v in state.items()}


def _floor_at_zero(x: torch.Tensor, group_size: int) -> torch.Tensor:
    """[N] -> [N]: each group's applicable (non-NaN) values minus their minimum."""
    groups = x.view(-1, group_size)
    lowest = torch.where(torch.isnan(groups), torch.full_like(groups, math.inf), groups).amin(1)
    return (groups - lowest.unsqueeze(1)).view(-1)


def _as_tensor(values: Sequence[Optional[float]]) -> torch.Tensor:
    return torch.tensor([math.nan if v is None else float(v) for v in values],
                        dtype=torch.float64).float()
