"""Processes and devices: one process (the default) or several under `torchrun`.

`torchrun --nproc_per_node=N train.py ...` sets RANK / WORLD_SIZE / LOCAL_RANK; every process
then runs the same loop on its own share of the prompts, and DeepSpeed averages gradients
(hybrid_rl/runtime/engine.py). Everything collective goes through the helpers here, so that in a
single process they cost nothing and need no process group.
"""
from __future__ import annotations

import math
import os
import socket
from contextlib import contextmanager
from typing import Any, Iterator

import torch
import torch.distributed as dist


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else int(os.environ.get("WORLD_SIZE", 1))


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else int(os.environ.get("RANK", 0))


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", 0))


def local_gpu() -> int:
    """This process's GPU index among those it sees: LOCAL_RANK, or 0 where a scheduler gives
    each task a single GPU (CUDA_VISIBLE_DEVICES of one device while LOCAL_RANK is 3)."""
    return local_rank() % max(torch.cuda.device_count(), 1)


def is_main() -> bool:
    """Only this process writes logs, metrics and checkpoints."""
    return rank() == 0


def adopt_slurm_environment() -> None:
    """Under SLURM (srun or the submitit launcher, one task per GPU) set the variables torchrun
    would have set, from SLURM's own: the rank layout and the first node as rendezvous."""
    if "WORLD_SIZE" in os.environ or int(os.environ.get("SLURM_NTASKS", 1)) <= 1:
        return
    try:
        from submitit.helpers import TorchDistributedEnvironment
    except ImportError as exc:
        raise ImportError("several SLURM tasks need submitit to "
                          "find their ranks: pip install -e .[slurm]") from exc
    TorchDistributedEnvironment().export(set_cuda_visible_devices=False)


def launched_multi_process() -> bool:
    return int(os.environ.get("WORLD_SIZE", 1)) > 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def init_process_group() -> None:
    """Join (or, in a lone process, create) the process group DeepSpeed needs. A single
    process gets the environment torchrun would have set, on a free local port."""
    if dist.is_initialized():
        return
    if not launched_multi_process():
        for key, value in (
            ("RANK", "0"),
            ("LOCAL_RANK", "0"),
            ("WORLD_SIZE", "1"),
            ("MASTER_ADDR", "127.0.0.1"),
        ):
            os.environ.setdefault(key, value)
        os.environ.setdefault("MASTER_PORT", str(_free_port()))
    if torch.cuda.is_available():
        torch.cuda.set_device(local_gpu())
    else:
        # DeepSpeed's CPU accelerator (gloo); without this it probes for a GPU and mpi4py.
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    import deepspeed

    deepspeed.init_distributed(dist_backend="nccl" if torch.cuda.is_available() else "gloo")
    global _owns_process_group
    _owns_process_group = True


_owns_process_group = False  # set when this module created the default process group


def shutdown() -> None:
    """Leave the process group at the end of a run (torch warns about one left open). Only
    one this module created: a group vLLM's engine set up for itself is its own to tear down
    (destroying it first makes vLLM's exit handler fail with "Invalid process group")."""
    global _owns_process_group
    if _owns_process_group and dist.is_initialized():
        dist.destroy_process_group()
    _owns_process_group = False


def device() -> torch.device:
    """Where models live: this process's GPU when there is one, else the CPU."""
    return torch.device("cuda", local_gpu()) if torch.cuda.is_available() else torch.device("cpu")


def collective_device() -> torch.device:
    """Where tensors of a collective must live: NCCL (the GPU backend) takes only CUDA
    tensors, gloo CPU ones."""
    if dist.is_initialized() and dist.get_backend() == "nccl":
        return device()
    return torch.device("cpu")


def barrier() -> None:
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


@contextmanager
def main_process_first() -> Iterator[None]:
    """Rank 0 builds shared, cached artefacts (the built-in model, the SFT warm-up, the default
    reward model) while the others wait; they then find them in the cache."""
    if not is_main():
        barrier()
    yield
    if is_main():
        barrier()


def broadcast_object(obj: Any) -> Any:
    """Rank 0's value on every rank (e.g. the run folder, whose name has a timestamp)."""
    if not (dist.is_initialized() and dist.get_world_size() > 1):
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_objects(obj: Any) -> list[Any]:
    """Every rank's value, in rank order, on every rank ([obj] in one process)."""
    if not (dist.is_initialized() and dist.get_world_size() > 1):
        return [obj]
    box: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(box, obj)
    return box


def mean_over_ranks(metrics: dict[str, float]) -> dict[str, float]:
    """Each metric averaged over the processes that have a number for it (NaN where none
    has). The processes need not have the same metrics: in a mixture, a process that drew no
    prompt of a task this step has no task/<name>/... figures, and a reduction over mismatched
    tensors would fail (gloo) or mix unrelated numbers (NCCL). So the names are agreed first."""
    if not (dist.is_initialized() and dist.get_world_size() > 1):
        return metrics
    keys = sorted(set().union(*gather_objects(sorted(metrics))))
    values = torch.tensor([float(metrics.get(k, math.nan)) for k in keys], dtype=torch.float64,
                          device=collective_device())
    present = ~torch.isnan(values)
    sums = torch.stack([torch.where(present, values, torch.zeros_like(values)),
                        present.to(values.dtype)])
    dist.all_reduce(sums)
    return dict(zip(keys, (sums[0] / sums[1]).cpu().tolist()))  # 0 / 0: NaN


def sum_over_ranks(value: float) -> float:
    if not (dist.is_initialized() and dist.get_world_size() > 1):
        return value
    t = torch.tensor([float(value)], dtype=torch.float64, device=collective_device())
    dist.all_reduce(t)
    return float(t.item())


def all_ranks_true(flag: bool) -> bool:
    """One decision for every process (a rank that alone skipped a collective would hang the
    rest)."""
    if not (dist.is_initialized() and dist.get_world_size() > 1):
        return flag
    t = torch.tensor([1 if flag else 0], device=collective_device())
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return bool(t.item())
