"""LoRA adapters through peft (`model.lora.*`).

Only the adapters train: the optimizer holds a few percent of the weights, and the frozen
base, with the adapters switched off, is the KL reference, so no second copy of the model is
loaded. A checkpoint's `policy/` is then a standard PEFT folder (adapter_config.json and the
adapter weights, which `PeftModel.from_pretrained` loads onto the base named inside it);
`load_policy` reads such a folder as the merged model it defines.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import torch

ADAPTER_CONFIG = "adapter_config.json"
# where a model trained through adapters and saved merged (an SFT warm-up, a reward model)
# keeps the adapters themselves, as a PEFT folder
ADAPTER_SUBFOLDER = "lora_adapter"


def _peft():
    try:
        import peft
    except ImportError as exc:  # a dependency of the project: only a broken set-up lacks it
        raise ImportError("model.lora needs peft: bash scripts/setup.sh (or pip install peft)") \
            from exc
    return peft


def add_adapters(policy: torch.nn.Module, settings,
                 task_type: str | None = "CAUSAL_LM") -> torch.nn.Module:
    """`policy` with fresh LoRA adapters (B = 0: the wrapped model starts as the base does);
    every base weight frozen. `settings`: a LoraConfig (hybrid_rl/config/model.py). peft's
    task type: CAUSAL_LM for a policy, SEQ_CLS for a reward model (its score head then trains
    whole), None for a bare trunk (PPO's critic)."""
    peft = _peft()
    targets = settings.target_modules
    config = peft.LoraConfig(
        r=settings.rank, lora_alpha=settings.alpha, lora_dropout=settings.dropout,
        task_type=task_type,
        target_modules="all-linear" if list(targets) == ["all-linear"] else list(targets))
    try:
        return peft.get_peft_model(policy, config)
    except ValueError as exc:  # e.g. a target module the model does not have
        raise ValueError(f"model.lora.target_modules={list(targets)}: {exc}") from exc


def load_adapters(base: torch.nn.Module, folder: str | Path,
                  trainable: bool = True) -> torch.nn.Module:
    """The base with a saved PEFT folder's adapters (a checkpoint's policy/, on resume)."""
    return _peft().PeftModel.from_pretrained(base, str(folder), is_trainable=trainable)


def is_adapter_folder(location: str | Path) -> bool:
    return (Path(location) / ADAPTER_CONFIG).is_file()


def adapter_base(folder: str | Path) -> str:
    """Where the base model of a PEFT folder lives (as recorded when it was saved)."""
    return json.loads((Path(folder) / ADAPTER_CONFIG).read_text())["base_model_name_or_path"]


def has_adapters(model: torch.nn.Module) -> bool:
    return hasattr(model, "disable_adapter") and hasattr(model, "peft_config")


def trainable_share(model: torch.nn.Module) -> tuple[int, int]:
    """(trainable, all) parameter counts."""
    params = list(model.parameters())
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


class AdaptersOff(torch.nn.Module):
    """The KL reference of a LoRA policy: the policy itself with its adapters switched off,
    in eval mode, without gradients. The policy is held, not registered as a submodule: its
    parameters belong to the training engine, and this module owns none of its own."""

    description = "the base with the LoRA adapters off (no copy)"

    def __init__(self, policy: torch.nn.Module):
        super().__init__()
        object.__setattr__(self, "policy", policy)
        self.config = policy.config

    def parameters(self, recurse: bool = True):  # where inputs go (the policy's device)
        return self.policy.parameters(recurse)

    @torch.no_grad()
    def forward(self, **inputs):
        was_training = self.policy.training
        self.policy.eval()
        try:
            with self.policy.disable_adapter():
                return self.policy(**inputs)
        finally:
            self.policy.train(was_training)


def adapted_weight(module: torch.nn.Module, adapters_on: bool = True) -> torch.Tensor:
    """A projection's weight as the model uses it: for a LoRA-wrapped layer with its adapters
    on, W + scale * B @ A summed over its active adapters (differentiable in A and B)."""
    base = getattr(module, "base_layer", None)
    if base is None:
        return module.weight
    weight = base.weight
    if adapters_on and not module.disable_adapters:
        for name in module.active_adapters:
            if name in module.lora_A:
                weight = weight + module.get_delta_weight(name).to(weight.dtype)
    return weight


def merged_weights(model: torch.nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    """(name, weight) of the model a LoRA policy defines, under the base model's own (Hugging
    Face) names: each adapted layer's W + scale * B @ A, every other weight as it is. One
    merged tensor at a time (a weight sync streams them: no second copy of the model), and
    computed, not merged in place, so the trained base never takes merge/unmerge rounding."""
    from peft.tuners.lora import LoraLayer

    inner = model.get_base_model()
    adapted = {f"{name}.base_layer.weight": module for name, module in inner.named_modules()
               if isinstance(module, LoraLayer)}
    for name, tensor in inner.state_dict().items():
        if "lora_" in name:
            continue
        module = adapted.get(name)
        if module is not None:
            with torch.no_grad():
                tensor = adapted_weight(module)
        yield name.replace(".base_layer.", "."), tensor.detach()


def hf_weights(model: torch.nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    """The weights a Hugging Face loader (vLLM's) expects: merged for a LoRA policy."""
    return merged_weights(model) if has_adapters(model) else iter(model.state_dict().items())
