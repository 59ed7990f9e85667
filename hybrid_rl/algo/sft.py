"""Supervised fine-tuning on demonstrations: the first stage of the RLHF pipeline.

A random model earns no reward, so the built-in model is warmed up before GRPO
(hybrid_rl/recipes/sft.py). The loss counts only the demonstration (answer) tokens, never the
prompt.
"""
from __future__ import annotations

import random
import time
from typing import Callable, Sequence

import torch

from hybrid_rl.algo.optim import make_optimizer, make_scheduler


def encode_demonstrations(tokenizer, prompts: Sequence[str],
                          demos: Sequence[str]) -> list[tuple[list[int], int]]:
    """Each example as (prompt + demo + EOS token ids, number of prompt tokens)."""
    out = []
    for prompt, demo in zip(prompts, demos):
        p = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        d = tokenizer(demo, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        out.append((p + d, len(p)))
    return out


def collate(examples, pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded (input_ids, attention_mask, labels); labels are -100 on prompt and padding."""
    width = max(len(ids) for ids, _ in examples)
    input_ids = torch.full((len(examples), width), pad_id)
    attention = torch.zeros((len(examples), width), dtype=torch.long)
    labels = torch.full((len(examples), width), -100)
    for row, (ids, n_prompt) in enumerate(examples):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        attention[row, : len(ids)] = 1
        labels[row, n_prompt : len(ids)] = torch.tensor(ids[n_prompt:])
    return input_ids, attention, labels


def sft_train(
    model, tokenizer, prompts: Sequence[str], demos: Sequence[str], *, steps: int, batch_size: int,
    learning_rate: float, lr_schedule: str = "constant", weight_decay: float = 0.0, seed: int = 0,
    log_every: int = 50, log: Callable[[str], None] = print,
) -> list[float]:
    """Train in place; returns the loss of every step."""
    examples = encode_demonstrations(tokenizer, prompts, demos)
    optimizer = make_optimizer(model, learning_rate, weight_decay)
    scheduler = make_scheduler(optimizer, lr_schedule, max(1, steps // 20), steps)
    rng = random.Random(seed)
    losses, start = [], time.time()
    model.train()
    for step in range(1, steps + 1):
        input_ids, attention, labels = collate(rng.sample(examples, min(batch_size, len(examples))),
                                               tokenizer.pad_token_id)
        loss = model(input_ids=input_ids, attention_mask=attention, labels=labels).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        losses.append(loss.item())
        if step % log_every == 0 or step == steps:
            log(f"[sft] step {step}/{steps}  loss "
                f"{sum(losses[-log_every:]) / len(losses[-log_every:]):.4f}  "
                f"({time.time() - start:.0f}s)")
    return losses
