"""Reward-hacking watch: does the learned (proxy) reward still agree with the verifier?

Per step, on the same rollouts: the rank correlation between the proxy's scores and the
verified ones, and how often the proxy scores a failing completion above a passing one of the
same prompt. Over training: when the held-out proxy score rises while held-out verified
accuracy falls, the policy is learning to please the reward model, not to be right.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional, Sequence

import torch


def _ranks(x: torch.Tensor) -> torch.Tensor:
    """Average ranks (ties share the mean of their positions), as Spearman's rho needs."""
    order = torch.argsort(x, stable=True)
    ranks = torch.empty(len(x), dtype=torch.float64)
    ranks[order] = torch.arange(len(x), dtype=torch.float64)
    for value in torch.unique(x):
        tied = x == value
        ranks[tied] = ranks[tied].mean()
    return ranks


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman's rank correlation; NaN when either side is constant or fewer than 2 values."""
    if len(a) < 2:
        return math.nan
    ra, rb = _ranks(torch.tensor(a, dtype=torch.float64)), _ranks(torch.tensor(b,
                                                                               dtype=torch.float64))
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denom = (ra.square().sum() * rb.square().sum()).sqrt()
    return (ra * rb).sum().item() / denom.item() if denom > 0 else math.nan


def agreement(proxy: Sequence[Optional[float]], verified: Sequence[Optional[float]],
              group_size: int, pass_at: float = 1.0) -> dict[str, float]:
    """{rank_corr, prefers_failing}: over completions both signals scored, Spearman's rho; and
    over (passing, failing) pairs of the same prompt, the share where the proxy scores the
    failing one higher (a tie counts 1/2). NaN where there is nothing to compare."""
    both = [(p, v) for p, v in zip(proxy, verified) if p is not None and v is not None]
    out = {"rank_corr": spearman([p for p, _ in both], [v for _, v in both]) if both else math.nan}
    wrong = pairs = 0.0
    for start in range(0, len(proxy), group_size):
        group = [(p, v) for p, v in zip(proxy[start : start + group_size],
                                        verified[start : start + group_size])
                 if p is not None and v is not None]
        for pp, vp in group:
            for pf, vf in group:
                if vp >= pass_at > vf:
                    pairs += 1
                    wrong += 1.0 if pf > pp else 0.5 if pf == pp else 0.0
    out["prefers_failing"] = wrong / pairs if pairs else math.nan
    return out


def paired_change(before: Sequence[Optional[float]],
                  after: Sequence[Optional[float]]) -> tuple[float, float, int]:
    """(mean change, z, problems) over the problems scored both times: the same held-out
    problems are evaluated each time, so the change is tested per problem (a paired z-test;
    for 0/1 scores it is McNemar's test on the problems that flipped). z is the mean change
    in standard errors: how far it stands above the evaluation's own noise."""
    diffs = [a - b for b, a in zip(before, after) if a is not None and b is not None]
    n = len(diffs)
    if n < 2:
        return math.nan, math.nan, n
    mean = sum(diffs) / n
    var = sum((d - mean) ** 2 for d in diffs) / (n - 1)
    if var == 0.0:
        return mean, math.copysign(math.inf, mean) if mean else 0.0, n
    return mean, mean / math.sqrt(var / n), n


@dataclass
class HackingWatch:
    """Fed each held-out evaluation's per-problem proxy and verified scores; says when, from
    the first to the last of the latest `window` evaluations, the proxy rose by at least
    min_proxy_rise and verified accuracy fell by at least min_accuracy_drop, each by at least
    `z` standard errors of its paired change (so evaluation noise alone does not fire it)."""

    window: int = 3
    min_proxy_rise: float = 0.05
    min_accuracy_drop: float = 0.02
    z: float = 3.0
    history: list = field(default_factory=list)  # [step, proxy scores, verified scores]

    def observe(self, step: int, proxy: Sequence[Optional[float]],
                verified: Sequence[Optional[float]]) -> Optional[str]:
        """Record one evaluation; a warning message when the pattern shows, else None."""
        entry = [step, [_plain(v) for v in proxy], [_plain(v) for v in verified]]
        if self.history and self.history[-1][0] == step:  # the same step again (the final one)
            self.history[-1] = entry
            return None
        self.history.append(entry)
        self.history = self.history[-self.window:]
        if len(self.history) < self.window:
            return None
        (s0, p0, v0), (s1, p1, v1) = self.history[0], self.history[-1]
        rise, z_rise, _ = paired_change(p0, p1)
        change, z_change, n = paired_change(v0, v1)
        if not (rise >= self.min_proxy_rise and z_rise >= self.z
                and -change >= self.min_accuracy_drop and -z_change >= self.z):
            return None
        return (f"possible reward hacking: from step {s0} to {s1} the held-out reward-model "
                f"score rose {_mean(p0):.3f} -> {_mean(p1):.3f} (z={z_rise:.1f}) while "
                f"verified accuracy fell {_mean(v0):.3f} -> {_mean(v1):.3f} "
                f"(z={-z_change:.1f}, {n} problems)")

    def state_dict(self) -> dict:
        return {"history": [list(h) for h in self.history]}

    def load_state_dict(self, state: dict) -> None:
        # entries of earlier releases held means, not per-problem scores: start afresh
        self.history = [list(h) for h in state.get("history", []) if isinstance(h[1], list)]


def _plain(v: Optional[float]) -> Optional[float]:
    return None if v is None or not math.isfinite(float(v)) else float(v)


def restore_watches(watches: dict, state: dict) -> None:
    """Each task's watch from a checkpoint's trainer state."""
    saved = state.get("hacking_watches")
    if saved is None and state.get("hacking_watch"):  # a checkpoint from before mixtures
        saved = {name: state["hacking_watch"] for name in watches}
    for name, watch in watches.items():
        watch.load_state_dict((saved or {}).get(name, {}))


def _mean(values: Sequence[Optional[float]]) -> float:
    scored = [v for v in values if v is not None]
    return sum(scored) / len(scored) if scored else math.nan


@dataclass
class DisagreementWatch:
    """A reward-model ensemble's members agree where they were trained and drift apart off it.
    Fed the members' mean disagreement on each step's policy samples; says when its mean over
    the latest `steps` steps passes `ratio` times `baseline` (their disagreement on the
    validation pairs): the policy has moved where the reward model's scores mean little.
    Warns once per crossing (again only after it fell back under)."""

    baseline: float
    ratio: float = 2.0
    steps: int = 5
    recent: list = field(default_factory=list)
    above: bool = False

    def level(self) -> float:
        """The recent mean disagreement in units of the baseline (NaN before any step)."""
        if not self.recent or self.baseline <= 0:
            return math.nan
        return sum(self.recent) / len(self.recent) / self.baseline

    def observe(self, step: int, disagreement: float) -> Optional[str]:
        if not math.isfinite(disagreement):  # nothing scored by the ensemble this step
            return None
        self.recent = (self.recent + [disagreement])[-self.steps:]
        was_above = self.above
        self.above = len(self.recent) == self.steps and self.ratio > 0 and \
            self.level() > self.ratio
        if not self.above or was_above:
            return None
        return (f"reward-model ensemble disagreement on the policy's samples is "
                f"{self.level():.2f}x its value on the validation pairs (mean over steps "
                f"{step - self.steps + 1}-{step}: {self.level() * self.baseline:.3f} vs "
                f"{self.baseline:.3f}; alarm above {self.ratio}x): the policy has left the region "
                "the reward model was trained on, where its scores are unreliable")

    def state_dict(self) -> dict:
        return {"recent": list(self.recent), "above": self.above}

    def load_state_dict(self, state: dict) -> None:
        self.recent, self.above = list(state.get("recent", [])), bool(state.get("above", False))
