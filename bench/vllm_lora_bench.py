"""How a LoRA policy's weights reach vLLM, measured both ways side by side in one run.

merged (what rollout=vllm does): W + scale x B A computed one layer at a time and loaded into
the engine's own weights (hybrid_rl.rollout.vllm_backend.VLLMRollout.sync_weights; timed
without the probe check the trainer adds).
adapters (vLLM's LoRA support): the PEFT folder saved to disk and handed to an engine started
with enable_lora, under a new LoRARequest id each sync (vLLM then loads it).

Both engines sample the same greedy rollouts; the run reports each sync's cost, the rollout
time with each, and how far the adapter engine's log-probs are from the merged engine's.
Run in the vLLM environment (.venv-vllm):

    .venv-vllm/bin/python bench/vllm_lora_bench.py --model <HF folder> [--rounds 3]
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch


def trained_like(policy, seed: int = 0):
    """Adapters that change the model (fresh ones have B = 0): small random B."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in policy.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.01)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="a Hugging Face model folder")
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--prompts", type=int, default=32)
    ap.add_argument("--tokens", type=int, default=32)
    args = ap.parse_args()

    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt
    from vllm.lora.request import LoRARequest

    from hybrid_rl.config.model import LoraConfig
    from hybrid_rl.models import lora
    from hybrid_rl.models.loading import load_policy, load_tokenizer
    from hybrid_rl.rollout.vllm_backend import VLLMRollout

    tokenizer = load_tokenizer(args.model)
    policy = lora.add_adapters(load_policy(args.model), LoraConfig(rank=args.rank,
                                                                   alpha=2.0 * args.rank))
    merged = VLLMRollout(policy, tokenizer, max_new_tokens=args.tokens, verify_sync=False,
                         max_model_len=512)
    adapters = LLM(model=args.model, skip_tokenizer_init=True, dtype="float32",
                   enforce_eager=True, max_model_len=512, enable_lora=True,
                   max_lora_rank=args.rank, max_loras=1, logprobs_mode="processed_logprobs")
    prompts = [f"What is {7 * i + 3} + {11 * i + 5}? Answer with the number."
               for i in range(args.prompts)]
    ids = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    params = SamplingParams(max_tokens=args.tokens, temperature=0.0, logprobs=0,
                            detokenize=False)  # greedy: both engines should pick the same
    folder = tempfile.mkdtemp(prefix="lora_bench_")
    rows = {"merged sync": [], "adapter sync": [], "merged rollout": [],
            "adapter rollout": [], "first adapter rollout": []}
    gaps, agree = [], []
    for round_ in range(1, args.rounds + 1):
        trained_like(policy, round_)  # a new optimizer step's adapters
        t = time.perf_counter()
        merged.sync_weights(policy)
        rows["merged sync"].append(time.perf_counter() - t)
        t = time.perf_counter()
        policy.save_pretrained(folder)
        request = LoRARequest(f"step{round_}", round_, folder)
        rows["adapter sync"].append(time.perf_counter() - t)
        outs = {}
        for name, engine, kwargs in (("merged", merged.llm, {}),
                                     ("adapter", adapters, {"lora_request": request})):
            for attempt in range(2):  # the first adapter rollout also loads the adapters
                t = time.perf_counter()
                outs[name] = engine.generate([TokensPrompt(prompt_token_ids=i) for i in ids],
                                             params, use_tqdm=False, **kwargs)
                took = time.perf_counter() - t
                key = f"first {name} rollout" if attempt == 0 and name == "adapter" \
                    else f"{name} rollout"
                if attempt == 0 or name == "adapter":
                    rows[key].append(took)
        for a, b in zip(outs["merged"], outs["adapter"]):
            for sa, sb in zip(a.outputs, b.outputs):
                agree.append(list(sa.token_ids) == list(sb.token_ids))
                if agree[-1]:
                    gaps.extend(abs(x[t].logprob - y[t].logprob) for x, y, t in
                                zip(sa.logprobs, sb.logprobs, sa.token_ids))
    print(f"model {args.model}, LoRA rank {args.rank}; {args.prompts} prompts x "
          f"{args.tokens} tokens, greedy; median of {args.rounds} rounds")
    print("| step | seconds |\n|---|---|")
    for name, values in rows.items():
        print(f"| {name} | {statistics.median(values):.3f} |")
    print(f"identical greedy samples: {sum(agree)}/{len(agree)}; log-prob gap on them: "
          f"mean {statistics.mean(gaps):.2e}, max {max(gaps):.2e}")


if __name__ == "__main__":
    main()
