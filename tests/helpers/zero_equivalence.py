"""Run under `torchrun --nproc_per_node=2` (tests/scale/test_deepspeed.py): one GRPO update
split over 2 processes under DeepSpeed ZeRO must move the weights exactly as one process
updating on the whole batch does, and the portable optimizer state must round-trip. A step
whose loss is NaN on one rank only, after an earlier micro-batch was already reduced, is
skipped on every rank as in one process: the weights, the optimizer state and the schedule
stay, and the next step still matches.

Usage: torchrun --nproc_per_node=2 zero_equivalence.py STAGE:LOSS_TYPE...  (each checked in
turn in the same two processes: the process start and DeepSpeed's set-up are paid once)
"""
import copy
import sys

import torch

from hybrid_rl.algo.optim import make_scheduler
from hybrid_rl.algo.update import UpdateSettings, grpo_update
from hybrid_rl.models.tiny import build_tiny_llama
from hybrid_rl.rollout import RolloutBatch
from hybrid_rl.runtime import distributed
from hybrid_rl.runtime.engine import (
    DeepSpeedSettings,
    NonFiniteLoss,
    TorchEngine,
    ZeroEngine,
)

N, P, T, G = 8, 5, 6, 2  # 8 completions in groups of 2: rank r takes rows 4r..4r+3


def fixed_batch() -> tuple[RolloutBatch, torch.Tensor]:
    g = torch.Generator().manual_seed(7)
    lengths = torch.tensor([6, 2, 5, 3, 1, 6, 4, 2])  # unequal: token-level losses must still agree
    mask = (torch.arange(T).unsqueeze(0) < lengths.unsqueeze(1)).long()
    batch = RolloutBatch(
        prompt_ids=torch.randint(3, 100, (N, P), generator=g),
        prompt_mask=torch.ones(N, P, dtype=torch.long),
        completion_ids=torch.randint(3, 100, (N, T), generator=g), completion_mask=mask,
        rollout_logprobs=torch.zeros(N, T),
        truncated=torch.zeros(N, dtype=torch.bool), texts=[""] * N,
    )
    return batch, torch.tensor([1.0, -1.0, 0.5, -0.5, 2.0, -2.0, 0.3, -0.3])


def engines(stage: int, weights=None):
    model = build_tiny_llama(104, hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64,
                             max_position_embeddings=64, init_seed=0)
    if weights is not None:  # as train.py does on resume: weights first, then the engine
        model.load_state_dict(weights)
    plain_model, zero_model = model, copy.deepcopy(model)
    # A large Adam eps keeps the step linear in tiny gradients, where float noise would
    # otherwise be amplified to a full lr-sized step.
    plain_opt = torch.optim.AdamW(plain_model.parameters(), lr=1e-2, weight_decay=0.1, eps=1e-3)
    zero_opt = torch.optim.AdamW(zero_model.parameters(), lr=1e-2, weight_decay=0.1, eps=1e-3)
    plain = TorchEngine(plain_model, plain_opt, make_scheduler(plain_opt, "linear", 0, 10), 1.0)
    zero = ZeroEngine(zero_model, zero_opt, make_scheduler(zero_opt, "linear", 0, 10),
                      DeepSpeedSettings(stage), micro_batch_size=2, max_grad_norm=1.0)
    return plain, zero


def max_weight_gap(plain, zero) -> float:
    full = zero.full_state_dict(every_rank=True)  # collective: every rank calls it
    return max((full[k] - v.detach()).abs().max().item() for k,
               v in plain.module.named_parameters())


def check(stage: int, loss_type: str) -> None:
    rank, world = distributed.rank(), distributed.world_size()
    assert world == 2
    batch, adv = fixed_batch()
    mine = torch.arange(rank * N // world, (rank + 1) * N // world)
    settings = UpdateSettings(loss_type, 0.2, 0.2, 0.0, 1, 2, T, 1.0, False)
    plain, zero = engines(stage)
    for step in range(2):  # two steps: the second one uses the optimizer state of the first
        plain_stats = grpo_update(plain, None, batch, adv, settings)
        zero_stats = grpo_update(zero, None, batch.select(mine), adv[mine], settings)
        gap = max_weight_gap(plain, zero)
        print(f"rank {rank} step {step}: weight gap {gap:.2e}, grad norm "
              f"{plain_stats['grad_norm']:.5f} "
              f"vs {zero_stats['grad_norm']:.5f}", flush=True)
        assert gap < 1e-6, gap
        assert abs(plain_stats["grad_norm"] - zero_stats["grad_norm"]) < 1e-5

    # The portable optimizer state is torch AdamW's own, with full tensors ...
    portable, reference = zero.optimizer_state(every_rank=True), plain.optimizer.state_dict()
    for i, ref in reference["state"].items():
        for key in ("exp_avg", "exp_avg_sq"):
            assert torch.allclose(portable["state"][i][key], ref[key], atol=1e-7), (i, key)
        assert float(portable["state"][i]["step"]) == float(ref["step"]) == 2.0
    # ... and loading the plain process's state into a fresh ZeRO engine continues identically.
    plain2, zero2 = engines(stage, plain.module.state_dict())
    # load_state_dict may keep the tensors
    plain2.optimizer.load_state_dict(copy.deepcopy(reference))
    zero2.load_optimizer_state(copy.deepcopy(reference))
    grpo_update(plain2, None, batch, adv, settings)
    grpo_update(zero2, None, batch.select(mine), adv[mine], settings)
    gap = max_weight_gap(plain2, zero2)
    print(f"rank {rank} after loading the state: weight gap {gap:.2e}", flush=True)
    assert gap < 1e-6, gap
    skip_a_nonfinite_step_like_one_process(plain2, zero2, batch, adv, mine, settings)
    if rank == 0:
        print(f"EQUIVALENT stage {stage} {loss_type}", flush=True)


def skip_a_nonfinite_step_like_one_process(plain, zero, batch, adv, mine, settings) -> None:
    poisoned = adv.clone()
    poisoned[3] = float("nan")  # rank 0's second micro-batch: its first was already reduced
    before = zero.full_state_dict(every_rank=True)
    for engine, rows in ((plain, slice(None)), (zero, mine)):
        steps = engine.scheduler.last_epoch
        try:
            grpo_update(engine, None, batch.select(torch.arange(len(batch))[rows]),
                        poisoned[rows], settings)
            raise AssertionError("a NaN loss must raise NonFiniteLoss")
        except NonFiniteLoss:
            pass
        assert engine.scheduler.last_epoch == steps  # the schedule did not advance
    after = zero.full_state_dict(every_rank=True)
    assert all(torch.equal(before[k], after[k]) for k in before)
    grpo_update(plain, None, batch, adv, settings)  # the next, finite step still agrees
    grpo_update(zero, None, batch.select(mine), adv[mine], settings)
    gap = max_weight_gap(plain, zero)
    print(f"rank {distributed.rank()} after a skipped NaN step: weight gap {gap:.2e}", flush=True)
    assert gap < 1e-6, gap


if __name__ == "__main__":
    distributed.init_process_group()
    for case in sys.argv[1:]:
        stage, loss_type = case.split(":")
        check(int(stage), loss_type)
