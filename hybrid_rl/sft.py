"""Supervised fine-tuning on demonstrations: the first stage of the RLHF pipeline.

A random model earns no reward, so the built-in model is warmed up here before GRPO. The loss
counts only the demonstration (answer) tokens, never the prompt. `warm_start` caches the
result under a key made of every setting that affects it, so reruns reuse it.
"""
from __future__ import annotations

import hashlib
import random
import time
from pathlib import Path
from typing import Callable, Sequence

import torch

from hybrid_rl.data import Sample
from hybrid_rl.models import load_policy, load_tokenizer, publish_folder, settings_key
from hybrid_rl.optim import make_optimizer, make_scheduler


def encode_demonstrations(tokenizer, prompts: Sequence[str], demos: Sequence[str]) -> list[tuple[list[int], int]]:
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
        input_ids, attention, labels = collate(rng.sample(examples, min(batch_size, len(examples))), tokenizer.pad_token_id)
        loss = model(input_ids=input_ids, attention_mask=attention, labels=labels).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        losses.append(loss.item())
        if step % log_every == 0 or step == steps:
            log(f"[sft] step {step}/{steps}  loss {sum(losses[-log_every:]) / len(losses[-log_every:]):.4f}  ({time.time() - start:.0f}s)")
    return losses


def warm_start(
    base_folder: str | Path, samples: Sequence[Sample], *, cache_dir: str | Path, key_parts: dict,
    steps: int, batch_size: int, learning_rate: float, lr_schedule: str, weight_decay: float, seed: int,
    log_every: int, log: Callable[[str], None] = print,
) -> Path:
    """Folder of the base model after SFT on `samples`' demonstrations; cached by settings and
    by the demonstrations themselves (a changed generator must not reuse a stale warm-up)."""
    demos = [s for s in samples if s.demonstration]
    if not demos:
        raise ValueError("SFT warm-up needs demonstrations, and this task's samples have none")
    data = hashlib.sha256("\0".join(f"{s.prompt}\0{s.demonstration}" for s in demos).encode()).hexdigest()
    key = settings_key(str(base_folder), key_parts, data, steps, batch_size, learning_rate, lr_schedule, weight_decay, seed)
    folder = Path(cache_dir).expanduser() / "sft" / key
    if (folder / "config.json").is_file():
        log(f"[sft] reusing cached warm-up model {folder} (same settings)")
        return folder
    log(f"[sft] warming up {base_folder} on {len(demos)} demonstrations for {steps} steps -> {folder}")
    tokenizer = load_tokenizer(str(base_folder))
    model = load_policy(str(base_folder))
    torch.manual_seed(seed)
    sft_train(
        model, tokenizer, [s.prompt for s in demos], [s.demonstration for s in demos], steps=steps,
        batch_size=batch_size, learning_rate=learning_rate, lr_schedule=lr_schedule, weight_decay=weight_decay, seed=seed,
        log_every=log_every, log=log,
    )

    def write(tmp: Path) -> None:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)

    publish_folder(folder, write)
    return folder
