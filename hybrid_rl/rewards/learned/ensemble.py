"""Reward-model ensembles: K reward models trained on the same pairs from different seeds
(head initialisation, LoRA initialisation, data order), read together.

The Bradley-Terry loss fixes only differences of scores, so each member's scores sit at an
offset and scale of their own; averaging raw scores would mix those offsets into the mean and,
worse, into the spread. Each member is therefore standardised by the mean and standard deviation
of its scores on the validation responses (kept in the ensemble's metadata) before the members
are combined: the ensemble's score is the members' mean, its disagreement their standard
deviation, both in units of a member's validation spread.

An ensemble folder holds member_0/ ... member_{K-1}/ (each an ordinary reward-model folder) and
hybrid_rl_reward_model.json with "members": [{"folder", "score_mean", "score_std"}, ...].
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import torch

from hybrid_rl.models.loading import ModelLoadError
from hybrid_rl.rewards.learned.model import META_FILE, RewardModel


def member_folder(k: int) -> str:
    return f"member_{k}"


def is_ensemble(folder: str | Path) -> bool:
    meta = Path(folder).expanduser() / META_FILE
    return meta.is_file() and "members" in json.loads(meta.read_text())


def first_member(folder: str | Path) -> Path:
    """A single model's folder: the folder itself, or an ensemble's first member (what code
    that wants one network, such as PPO's critic start, reads)."""
    folder = Path(folder).expanduser()
    return folder / member_folder(0) if is_ensemble(folder) else folder


def standardisation(scores: torch.Tensor) -> dict:
    """{score_mean, score_std} of a member's scores on the validation responses."""
    std = scores.std().item() if len(scores) > 1 else 1.0
    return {"score_mean": scores.mean().item(), "score_std": std if std > 1e-8 else 1.0}


def standardised(scores: torch.Tensor, stats: dict) -> torch.Tensor:
    return (scores - stats["score_mean"]) / stats["score_std"]


class RewardEnsemble:
    """K reward models scored together: mean, spread, or the conservative mean - k * spread."""

    def __init__(self, members: list[RewardModel], stats: list[dict]):
        if len(members) != len(stats) or len(members) < 2:
            raise ValueError("an ensemble needs at least two members, each with its statistics")
        self.members, self.stats = members, stats

    @classmethod
    def load(cls, folder: str | Path) -> "RewardEnsemble":
        folder = Path(folder).expanduser()
        entries = json.loads((folder / META_FILE).read_text())["members"]
        try:
            stats = [{"score_mean": float(e["score_mean"]), "score_std": float(e["score_std"])}
                     for e in entries]
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelLoadError(f"{folder / META_FILE}: a member entry lacks its "
                                 f"score_mean/score_std ({exc})") from None
        return cls([RewardModel.load(folder / e["folder"]) for e in entries], stats)

    def member_scores(self, prompts: Sequence[str], responses: Sequence[str],
                      batch_size: int = 128) -> torch.Tensor:
        """[K, N] standardised scores, one row per member."""
        return torch.stack([
            standardised(torch.tensor(rm.score(prompts, responses, batch_size),
                                      dtype=torch.float64), s)
            for rm, s in zip(self.members, self.stats)])

    def score(self, prompts: Sequence[str], responses: Sequence[str],
              batch_size: int = 128) -> list[float]:
        """The members' mean (what a single reward model's `score` gives)."""
        return self.member_scores(prompts, responses, batch_size).mean(0).tolist()


def penalised(member_scores: torch.Tensor, penalty: float) -> tuple[list[float], list[float]]:
    """([N] mean - penalty * std, [N] std) of [K, N] member scores (std with Bessel's
    correction: K is small)."""
    mean, std = member_scores.mean(0), member_scores.std(0)
    return (mean - penalty * std).tolist(), std.tolist()


def load_reward_model(folder: str | Path) -> RewardModel | RewardEnsemble:
    """A trained reward model or ensemble, whichever the folder holds."""
    return RewardEnsemble.load(folder) if is_ensemble(folder) else RewardModel.load(folder)
