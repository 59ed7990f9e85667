"""Run with the vLLM environment's Python (tests/scale/test_vllm.py): weight sync into a live
vLLM engine, the stale-weight probe, the failures that must stop training, and an engine
started from a policy whose weights exist only inside a gather (ZeRO-3's shards).

Usage: python vllm_sync_faults.py FOLDER  (a tiny random Llama is written there)
"""
import contextlib
import sys

import torch

from hybrid_rl.algo.logprobs import completion_logprobs
from hybrid_rl.models.loading import load_policy, load_tokenizer
from hybrid_rl.models.tiny import write_tiny_model_folder
from hybrid_rl.rollout import build_backend
from hybrid_rl.rollout.vllm_backend import WeightSyncError


def gap(rollout, policy, batch) -> float:
    logp = completion_logprobs(policy, batch.prompt_ids, batch.prompt_mask, batch.completion_ids,
                               batch.completion_mask).logp
    return float(((logp - batch.rollout_logprobs).abs() * batch.completion_mask).max())


def expect_sync_error(rollout, weights_policy, match: str) -> None:
    try:
        rollout.sync_weights(weights_policy)
    except WeightSyncError as exc:
        assert match in str(exc), exc
    else:
        raise AssertionError("the sync should have failed")
    try:  # and the engine refuses to sample afterwards
        rollout.generate(["1+1="], 2)
    except WeightSyncError as exc:
        assert "unusable after a failed weight sync" in str(exc), exc
    else:
        raise AssertionError("a broken engine must not sample")


class Truncated(torch.nn.Module):
    """A policy whose state_dict lacks the last layer: a partial sync."""

    def __init__(self, policy):
        super().__init__()
        self.policy = policy

    def state_dict(self, *args, **kwargs):
        return {k: v for k, v in self.policy.state_dict().items() if ".layers.1." not in k}


class ShardedOutsideGather(torch.nn.Module):
    """A ZeRO-3 policy as seen outside a parameter gather: every weight holds nothing."""

    def __init__(self, policy):
        super().__init__()
        self.config, self.generation_config = policy.config, policy.generation_config
        self.names = list(policy.state_dict())

    def state_dict(self, *args, **kwargs):
        return {name: torch.empty(0) for name in self.names}


def starts_inside_the_gather(policy, tokenizer) -> None:
    """The engine's first weights come from inside `gather`, never from the shards."""
    entered = []

    @contextlib.contextmanager
    def gather():
        entered.append(True)
        yield policy

    sharded = ShardedOutsideGather(policy)
    rollout = build_backend("vllm", sharded, tokenizer, max_new_tokens=6, gather=gather)
    assert entered == [True], entered
    batch = rollout.generate(["12+34=", "5+6="], 2)
    assert gap(rollout, policy, batch) < 1e-3
    try:  # without the gather the shards are all the engine could get: refused, not sampled
        build_backend("vllm", sharded, tokenizer, max_new_tokens=6)
    except WeightSyncError as exc:
        assert "vLLM weight sync failed" in str(exc), exc
    else:
        raise AssertionError("an engine started from empty shards must fail")
    print("GATHERED START OK", flush=True)


def main(folder: str) -> None:
    # head_dim 32: vLLM's CPU attention kernels have no head_dim 16.
    write_tiny_model_folder(folder, hidden_size=64, num_layers=2, num_heads=2, intermediate_size=64,
                            max_position_embeddings=64, init_seed=0)
    tokenizer, policy = load_tokenizer(folder), load_policy(folder)
    # First: vLLM shares layers such as the rotary cache between the engines of one process, and
    # the failed syncs below leave them unusable (a run has one engine and stops at a failure).
    starts_inside_the_gather(policy, tokenizer)
    rollout = build_backend("vllm", policy, tokenizer, max_new_tokens=6, temperature=1.0)
    prompts = ["12+34=", "5+6=", "70-8="]
    batch = rollout.generate(prompts, 4)
    assert batch.completion_ids.shape == (12, 6) and len(batch.texts) == 12
    before = gap(rollout, policy, batch)
    assert before < 1e-3, before

    with torch.no_grad():  # an "optimizer step"
        for p in policy.parameters():
            p.mul_(1.05)
    stale = rollout.probe_gap(policy)
    assert stale > 1e-2, stale  # the probe sees weights the engine does not have yet
    rollout.sync_weights(policy)
    after = gap(rollout, policy, rollout.generate(prompts, 4))
    assert after < 1e-3 and rollout.probe_gap(policy) < 1e-3, after
    print(
        f"SYNCED: gap before {before:.2e}, stale probe {stale:.2e}, after sync {after:.2e}",
        flush=True,
    )

    expect_sync_error(rollout, Truncated(policy), "partial vLLM weight sync")
    broken = build_backend("vllm", policy, tokenizer, max_new_tokens=6)
    wrong = load_policy(folder)
    with torch.no_grad():
        wrong.model.embed_tokens.weight.data = wrong.model.embed_tokens.weight.data[:, :16].clone()
    expect_sync_error(broken, wrong, "vLLM weight sync failed")
    print("FAULTS OK", flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
