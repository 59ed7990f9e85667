"""Training a reward model on preference pairs with the Bradley-Terry loss, and scoring it."""
from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch

from hybrid_rl.rewards.learned.loss import bradley_terry_loss, pairwise_metrics
from hybrid_rl.rewards.learned.model import RewardModel
from hybrid_rl.rewards.learned.pairs import PreferencePair


@dataclass(frozen=True)
class FitSettings:
    batch_size: int = 16  # pairs per optimizer step
    learning_rate: float = 5e-5  # AdamW, decayed linearly to 0 at max_steps
    max_steps: int = 300
    max_time_s: Optional[float] = None  # stop early after this many seconds
    margin: float = 0.0  # added to every pair's own margin
    center_coef: float = 0.0
    max_grad_norm: float = 1.0
    seed: int = 0
    log_every: int = 25


def _length(p: PreferencePair) -> int:
    return len(p.prompt) + max(len(p.chosen), len(p.rejected))


def length_grouped_batches(pairs: Sequence[PreferencePair], batch_size: int,
                           rng: random.Random) -> list[list[PreferencePair]]:
    """Batches of pairs of similar length (little padding), in random order. Sorting within
    a shuffled window keeps each batch a random draw of the data, not all the short ones first."""
    order = list(pairs)
    rng.shuffle(order)
    window = batch_size * 32
    batches = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start : start + window], key=_length)
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


def pair_scores(rm: RewardModel, pairs: Sequence[PreferencePair],
                batch_size: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
    """([P] chosen scores, [P] rejected scores), no gradients."""
    prompts = [p.prompt for p in pairs]
    scores = rm.score(
        prompts + prompts, [p.chosen for p in pairs] + [p.rejected for p in pairs], batch_size
    )
    return torch.tensor(scores[: len(pairs)]), torch.tensor(scores[len(pairs) :])


def evaluate_pairs(rm: RewardModel, pairs: Sequence[PreferencePair], batch_size: int = 128) -> dict:
    chosen, rejected = pair_scores(rm, pairs, batch_size)
    return pairwise_metrics(chosen, rejected, torch.tensor([p.flipped for p in pairs]))


def fit_reward_model(
    rm: RewardModel,
    pairs: Sequence[PreferencePair],
    s: FitSettings,
    log: Callable[[str], None] = print,
) -> dict:
    """Bradley-Terry training; returns steps, seconds and the mean loss of the last steps."""
    rng = random.Random(s.seed)
    torch.manual_seed(s.seed)
    optimizer = torch.optim.AdamW([p for p in rm.model.parameters() if p.requires_grad],
                                  lr=s.learning_rate)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda i: max(0.0,
                                                                           1.0 - i / s.max_steps))
    rm.model.train()
    step, start, recent = 0, time.time(), []

    def done() -> bool:
        return step >= s.max_steps or (
            s.max_time_s is not None and time.time() - start >= s.max_time_s
        )

    while not done():
        for batch in length_grouped_batches(pairs, s.batch_size, rng):
            prompts = [p.prompt for p in batch]
            scores = rm.forward(prompts + prompts,
                                [p.chosen for p in batch] + [p.rejected for p in batch])
            margin = torch.tensor([p.margin + s.margin for p in batch])
            soft = [p.label for p in batch]
            loss = bradley_terry_loss(
                scores[: len(batch)], scores[len(batch) :], margin, s.center_coef,
                torch.tensor(soft) if any(v != 1.0 for v in soft) else None,
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(rm.model.parameters(), s.max_grad_norm)
            optimizer.step()
            scheduler.step()
            step += 1
            recent = (recent + [loss.item()])[-s.log_every :]
            if step % s.log_every == 0:
                log(f"reward model step {step}: loss {sum(recent) / len(recent):.4f} "
                    f"({time.time() - start:.0f}s)")
            if done():
                break
    rm.model.eval()
    return {"steps": step, "seconds": round(time.time() - start, 1),
            "loss": sum(recent) / max(len(recent), 1)}
