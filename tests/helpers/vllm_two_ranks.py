"""Run under `torchrun --nproc_per_node=2` with the vLLM environment's Python
(tests/scale/test_vllm.py): colocated vLLM in several processes. Each rank builds its own
engine with the external launcher, whose worker takes this rank's LOCAL_RANK (on GPUs: its own
device, where the in-process executor put every engine on device 0); the engines sample, and
each takes its rank's policy weights after an update.

Usage: torchrun --nproc_per_node=2 vllm_two_ranks.py FOLDER  (a tiny Llama is written there)
"""
import os
import sys

import torch
import torch.distributed as dist

from hybrid_rl.models.loading import load_policy, load_tokenizer
from hybrid_rl.models.tiny import write_tiny_model_folder
from hybrid_rl.rollout import build_backend
from hybrid_rl.rollout.vllm_backend import executor_backend


def main(folder: str) -> None:
    dist.init_process_group("gloo")  # the trainer's group, as DeepSpeed would have made it
    rank, local_rank = dist.get_rank(), int(os.environ["LOCAL_RANK"])
    if rank == 0:  # head_dim 32: vLLM's CPU attention kernels have no head_dim 16
        write_tiny_model_folder(folder, hidden_size=64, num_layers=2, num_heads=2,
                                intermediate_size=64, max_position_embeddings=64, init_seed=0)
    dist.barrier()
    assert executor_backend() == "external_launcher"
    tokenizer, policy = load_tokenizer(folder), load_policy(folder)
    rollout = build_backend("vllm", policy, tokenizer, max_new_tokens=6, seed=rank)
    placement = rollout.llm.collective_rpc("hybrid_rl_placement")
    assert [(p["rank"], p["local_rank"]) for p in placement] == [(rank, local_rank)], placement
    batch = rollout.generate(["12+34=", "5+6="], 4)
    assert batch.completion_ids.shape == (8, 6)
    with torch.no_grad():  # each rank's "optimizer step" (ZeRO keeps ranks equal; any works)
        for p in policy.parameters():
            p.mul_(1.0 + 0.05 * (rank + 1))
    stale = rollout.probe_gap(policy)
    rollout.sync_weights(policy)  # verified by the probe: raises if this engine missed it
    assert stale > 1e-2 and rollout.probe_gap(policy) < 1e-3, (stale, rollout.probe_gap(policy))
    # The engines are independent: different seeds sample different completions.
    samples = [None] * dist.get_world_size()
    dist.all_gather_object(samples, batch.completion_ids.tolist())
    assert samples[0] != samples[1]
    print(f"RANK {rank} OK: worker {placement[0]}, stale probe {stale:.2e}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
