"""The SFT warm-up as a cached model folder: a random model earns no reward, so the built-in
model learns the task's answer format from demonstrations before GRPO. The result is cached
under a key made of every setting that affects it, so reruns reuse it.

With `adapters` (model.lora, when model.lora.warmup) only LoRA adapters train; the folder holds
the model with them merged (what GRPO then starts from, with fresh adapters of its own) and the
adapters themselves as a PEFT folder in `lora_adapter/`."""
from __future__ import annotations

import hashlib
from dataclasses import asdict
from pathlib import Path
from typing import Callable, Sequence

import torch

from hybrid_rl.algo.sft import sft_train
from hybrid_rl.data.samples import Sample
from hybrid_rl.models.loading import load_policy, load_tokenizer, publish_folder, settings_key
from hybrid_rl.models.lora import ADAPTER_SUBFOLDER, add_adapters


def warm_start(
    base_folder: str | Path, samples: Sequence[Sample], *, cache_dir: str | Path, key_parts: dict,
    steps: int, batch_size: int, learning_rate: float, lr_schedule: str, weight_decay: float,
        seed: int, log_every: int, log: Callable[[str], None] = print, adapters=None,
) -> Path:
    """Folder of the base model after SFT on `samples`' demonstrations; cached by settings and
    by the demonstrations themselves (a changed generator must not reuse a stale warm-up)."""
    demos = [s for s in samples if s.demonstration]
    if not demos:
        raise ValueError("SFT warm-up needs demonstrations, and this task's samples have none")
    data = hashlib.sha256(
        "\0".join(f"{s.prompt}\0{s.demonstration}" for s in demos).encode()
    ).hexdigest()
    key = settings_key(str(base_folder), key_parts, data, steps, batch_size, learning_rate,
                       lr_schedule, weight_decay, seed,
                       *([] if adapters is None else [asdict(adapters)]))
    folder = Path(cache_dir).expanduser() / "sft" / key
    if (folder / "config.json").is_file():
        log(f"[sft] reusing cached warm-up model {folder} (same settings)")
        return folder
    log(f"[sft] warming up {base_folder} on {len(demos)} demonstrations for {steps} steps"
        f"{'' if adapters is None else f' (LoRA adapters of rank {adapters.rank})'} -> {folder}")
    tokenizer = load_tokenizer(str(base_folder))
    model = load_policy(str(base_folder))
    torch.manual_seed(seed)
    if adapters is not None:
        model = add_adapters(model, adapters)
    sft_train(
        model, tokenizer, [s.prompt for s in demos], [s.demonstration for s in demos], steps=steps,
        batch_size=batch_size, learning_rate=learning_rate, lr_schedule=lr_schedule,
        weight_decay=weight_decay, seed=seed, log_every=log_every, log=log,
    )

    def write(tmp: Path) -> None:
        merged = model
        if adapters is not None:
            model.save_pretrained(tmp / ADAPTER_SUBFOLDER)
            merged = model.merge_and_unload()
        merged.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)

    publish_folder(folder, write)
    return folder
