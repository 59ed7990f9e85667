"""Memory per GPU of a GRPO run, per sharding setting, before renting the GPUs.

    python scripts/memory_plan.py preset=qwen2.5-1.5b-instruct task=gsm8k --gpus 8
    python scripts/memory_plan.py model=hf model.path=/models/my-llama --prompt-tokens 512

Takes the same overrides as train.py (the model, rollout, trainer and deepspeed settings are
read from the composed config) and prints one row per setting: 1 GPU, ZeRO-2, ZeRO-3 and
ZeRO-3 with the optimizer offloaded. The formulas are in hybrid_rl/runtime/memory_plan.py.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hybrid_rl.runtime.memory_plan import Architecture, Workload, format_plan  # noqa: E402

# Published config.json values of the presets' models (conf/preset), so a plan needs no download.
KNOWN = {
    "Qwen/Qwen2.5-0.5B-Instruct": Architecture(896, 24, 14, 2, 4864, 151936, True, True),
    "Qwen/Qwen2.5-1.5B-Instruct": Architecture(1536, 28, 12, 2, 8960, 151936, True, True),
    "Qwen/Qwen2.5-Math-1.5B": Architecture(1536, 28, 12, 2, 8960, 151936, True, True),
    "meta-llama/Llama-3.2-1B-Instruct": Architecture(2048, 16, 32, 8, 8192, 128256, True, False),
    "Qwen/Qwen2.5-7B-Instruct": Architecture(3584, 28, 28, 4, 18944, 152064, False, True),
}


def architecture(cfg) -> Architecture:
    m = cfg.model
    if m.source == "builtin":
        t = m.tiny
        return Architecture(t.hidden_size, t.num_layers, t.num_heads, t.num_heads,
                            t.intermediate_size, 104)
    if m.path in KNOWN:
        return KNOWN[m.path]
    config = Path(str(m.path)).expanduser() / "config.json"
    if config.is_file():
        return Architecture.from_hf_config(json.loads(config.read_text()))
    raise SystemExit("memory_plan: no architecture for "
                     f"model.path={m.path!r}: give a local folder with a "
                     f"config.json, or one of {sorted(KNOWN)}")


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--gpus", type=int, default=8, help="GPUs the ZeRO rows shard over (default 8)"
    )
    parser.add_argument(
        "--prompt-tokens", type=int, default=256, help="longest prompt, in tokens (default 256)"
    )
    parser.add_argument(
        "--gpu-gib", type=float, default=80.0, help="memory of one GPU in GiB (default 80)"
    )
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, as for train.py")
    args = parser.parse_args(argv)

    from hydra import compose, initialize_config_dir

    from hybrid_rl.config.schema import register_configs

    register_configs()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=args.overrides)
    t = cfg.trainer
    # every process samples prompts_per_step x num_generations (each rank draws its own)
    work = Workload(args.prompt_tokens, cfg.rollout.max_new_tokens, t.micro_batch_size,
                    t.prompts_per_step * t.num_generations, cfg.model.dtype, t.beta,
                    cfg.model.gradient_checkpointing, cfg.rollout.backend == "vllm",
                    args.gpu_gib, cfg.rollout.gpu_memory_utilization,
                    cfg.model.lora.rank if cfg.model.lora.enabled else 0)
    table = format_plan(architecture(cfg), work, args.gpus)
    print(table)
    return table


if __name__ == "__main__":
    main()
