"""Step metrics averaged over processes that do not all have the same metrics (a mixture's
process that drew no prompt of a task): two real gloo processes."""
import json
import math

import torch
import torch.distributed as dist

from hybrid_rl.runtime import distributed

PER_RANK = [{"loss": 1.0, "task/explain/reward": 0.5, "accuracy": math.nan},
            {"loss": 3.0, "accuracy": 0.25}]  # rank 1 sampled no explain prompt


def _rank(rank: int, store: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    result = distributed.mean_over_ranks(PER_RANK[rank])
    with open(f"{out}.{rank}", "w") as fh:
        json.dump(result, fh)
    dist.destroy_process_group()


def test_metrics_missing_on_a_rank_are_averaged_over_the_ranks_that_have_them(tmp_path):
    out = str(tmp_path / "result")
    torch.multiprocessing.spawn(_rank, args=(str(tmp_path / "store"), out), nprocs=2)
    results = [json.loads((tmp_path / f"result.{r}").read_text()) for r in (0, 1)]
    assert results[0] == results[1] == {"accuracy": 0.25, "loss": 2.0,
                                        "task/explain/reward": 0.5}
