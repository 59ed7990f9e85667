"""Export a LoRA checkpoint as a plain Hugging Face model: its base with the adapters merged.

    python scripts/export_merged.py outputs/<run>/checkpoints/best/policy merged_model
    python scripts/export_merged.py <PEFT folder> <out> --base /models/Qwen2.5-7B-Instruct

A checkpoint's policy/ of a model.lora run is a PEFT folder: the adapters, and the path of the
base they were trained on (--base replaces it, say on another machine). The output loads with
AutoModelForCausalLM.from_pretrained, vLLM or any other tool, no peft needed.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def export_merged(adapters: str, out: str, base: str | None = None) -> Path:
    from hybrid_rl.models import lora
    from hybrid_rl.models.loading import ModelLoadError, load_policy, load_tokenizer

    if not lora.is_adapter_folder(adapters):
        raise ModelLoadError(f"{adapters}: not a PEFT folder (no {lora.ADAPTER_CONFIG}); a "
                             "checkpoint of a model.lora run keeps one in policy/")
    base = base or lora.adapter_base(adapters)
    merged = lora.load_adapters(load_policy(base), adapters, trainable=False).merge_and_unload()
    merged.save_pretrained(out)
    tokenizer_source = adapters if (Path(adapters) / "tokenizer_config.json").is_file() else base
    load_tokenizer(tokenizer_source).save_pretrained(out)
    return Path(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("adapters", help="a PEFT folder (a LoRA run's checkpoints/<step>/policy)")
    ap.add_argument("out", help="folder to write the merged model to")
    ap.add_argument("--base", help="the base model folder (default: the one the folder names)")
    args = ap.parse_args()
    out = export_merged(args.adapters, args.out, args.base)
    print(f"merged model written to {out}")


if __name__ == "__main__":
    main()
