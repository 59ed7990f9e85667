"""Run in its own process (tests/scale/test_gpu_readiness.py): under bf16, a checkpoint keeps
DeepSpeed's fp32 master weights, and a resumed engine continues from them exactly. Updates
smaller than bf16's rounding step live only in the masters: a resume from the saved bf16
policy alone loses them (checked too, so the test can tell the two apart).

Usage: python bf16_master_resume.py STAGE...
"""
import sys

import torch
from deepspeed.utils import safe_get_full_fp32_param

from hybrid_rl.algo.optim import make_scheduler
from hybrid_rl.models.tiny import build_tiny_llama
from hybrid_rl.runtime import distributed
from hybrid_rl.runtime.engine import MASTER_WEIGHTS, DeepSpeedSettings, ZeroEngine

BATCH = torch.randint(3, 100, (2, 8), generator=torch.Generator().manual_seed(0))


def engine(stage: int, weights=None) -> ZeroEngine:
    model = build_tiny_llama(104, hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64,
                             max_position_embeddings=64, init_seed=0).to(torch.bfloat16)
    if weights is not None:  # as train.py resumes: the saved (bf16) policy, then the engine
        missing = model.load_state_dict(weights, strict=False).missing_keys
        assert missing == ["lm_head.weight"], missing  # tied to the embeddings: not saved twice
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)  # steps below bf16's rounding
    return ZeroEngine(model, optimizer, make_scheduler(optimizer, "constant", 0, 10),
                      DeepSpeedSettings(stage, bf16=True), micro_batch_size=2, max_grad_norm=1.0)


def step(e: ZeroEngine) -> None:
    e.backward(e.model(input_ids=BATCH, labels=BATCH).loss, last=True)
    e.step()


def masters(e: ZeroEngine) -> list[torch.Tensor]:
    return [safe_get_full_fp32_param(p).detach().float().clone() for p in e.module.parameters()]


def largest_gap(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    return max(float((x - y).abs().max()) for x, y in zip(a, b, strict=True))


def check(stage: int) -> None:
    trained = engine(stage)
    for _ in range(3):
        step(trained)
    weights, state = trained.full_state_dict(), trained.optimizer_state()
    assert {t.dtype for t in weights.values()} == {torch.bfloat16}  # the policy folder: bf16
    assert len(state[MASTER_WEIGHTS]) == len(list(trained.module.parameters()))
    lost = engine(stage, weights)  # the old checkpoint: the bf16 policy, no masters
    lost.load_optimizer_state({k: v for k, v in state.items() if k != MASTER_WEIGHTS})
    resumed = engine(stage, weights)
    resumed.load_optimizer_state(state)
    assert largest_gap(masters(resumed), masters(trained)) == 0.0
    lost_gap = largest_gap(masters(lost), masters(trained))
    assert lost_gap > 1e-6, lost_gap
    step(trained)
    step(resumed)  # the next step continues exactly
    assert largest_gap(masters(resumed), masters(trained)) == 0.0
    print(f"STAGE {stage} MASTERS OK: without them the resume was off by {lost_gap:.1e}",
          flush=True)


if __name__ == "__main__":
    distributed.init_process_group()
    for stage in sys.argv[1:]:
        check(int(stage))
