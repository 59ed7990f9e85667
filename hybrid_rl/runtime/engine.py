"""The training engine: how the policy's gradients become an optimizer step, in one process
(torch AdamW) or sharded over processes by DeepSpeed ZeRO (stage 0 = plain data parallel, 2 =
optimizer states and gradients sharded, 3 = parameters too).

Both engines offer the same five things to the GRPO update (hybrid_rl/algo/update.py): `model`
(the module to run forward), `backward(loss, last)`, `step() -> grad norm`, `gathered()` (the
full parameters, for sampling and saving) and a portable optimizer state. The optimizer state
is always written in torch AdamW's own `state_dict` layout with full (unsharded) tensors, so a
checkpoint written by 2 processes under ZeRO-3 resumes in a single plain process and back.
Under bf16 it also holds DeepSpeed's fp32 master weights (`MASTER_WEIGHTS`, in parameter
order): the saved policy folder is the bf16 model users load, and updates smaller than bf16's
rounding step live only in the masters, so a resume that started from the bf16 weights alone
would lose them.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Any, Iterator

import torch

from hybrid_rl.models.lora import has_adapters
from hybrid_rl.runtime import distributed

MASTER_WEIGHTS = "master_weights"  # key of the portable optimizer state (list of fp32 tensors)


class NonFiniteLoss(RuntimeError):
    """The loss or gradient was NaN or infinite; the update was skipped."""


@dataclass(frozen=True)
class DeepSpeedSettings:
    stage: int  # 0 | 2 | 3
    offload_optimizer: bool = False  # optimizer states and step in CPU memory (DeepSpeedCPUAdam)
    bf16: bool = False  # bf16 mixed precision (GPU); fp32 master weights in the optimizer


def deepspeed_config(
    s: DeepSpeedSettings, micro_batch_size: int, max_grad_norm: float
) -> dict[str, Any]:
    zero: dict[str, Any] = {"stage": s.stage}
    if s.offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu"}
    if s.stage == 3:
        # Threshold 0: every parameter is partitioned, small ones too (the lean forward pass
        # and sampling gather whole layers themselves).
        zero.update({"stage3_param_persistence_threshold": 0,
                     "stage3_gather_16bit_weights_on_model_save": False})
    return {
        "train_micro_batch_size_per_gpu": micro_batch_size,
        "gradient_accumulation_steps": 1,  # the update sets the accumulation boundary itself
        "gradient_clipping": max_grad_norm, "zero_optimization": zero,
        # ZeRO-2 skips a step with NaN/inf gradients in fp32; in bf16 only when asked to
        "bf16": {"enabled": s.bf16, "check_grad_overflow": True} if s.bf16 else {"enabled": False},
        # micro-batch gradients accumulate in fp32, not in the bf16 of the weights
        **({"data_types": {"grad_accum_dtype": "fp32"}} if s.bf16 else {}),
        "zero_allow_untested_optimizer": True, "steps_per_print": 2**62,
        "wall_clock_breakdown": False,
    }


class TorchEngine:
    """One process: torch AdamW on the module itself."""

    def __init__(self, module: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler,
                 max_grad_norm: float):
        self.model = self.module = module
        self.optimizer, self.scheduler, self.max_grad_norm = optimizer, scheduler, max_grad_norm

    def zero_grad(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)

    def backward(self, loss: torch.Tensor, last: bool) -> None:
        loss.backward()

    def discard_step(self, loss: torch.Tensor) -> None:
        """Drop this step's gradients (a micro-batch's loss was not finite)."""
        self.zero_grad()

    def step(self) -> float:
        norm = torch.nn.utils.clip_grad_norm_(
            self.module.parameters(), self.max_grad_norm if self.max_grad_norm > 0 else float("inf")
        )
        if not torch.isfinite(norm):
            self.zero_grad()
            raise NonFiniteLoss(f"non-finite gradient norm {norm.item()}; update skipped")
        self.optimizer.step()
        self.scheduler.step()
        return float(norm)

    @contextlib.contextmanager
    def gathered(self) -> Iterator[torch.nn.Module]:
        yield self.module

    def full_state_dict(self, every_rank: bool = False) -> dict[str, torch.Tensor]:
        return self.module.state_dict()

    def optimizer_state(self, every_rank: bool = False) -> dict[str, Any]:
        return self.optimizer.state_dict()

    def load_optimizer_state(self, state: dict[str, Any]) -> None:
        """A state saved under bf16 brings fp32 master weights: finer than the saved policy
        folder's bf16 weights, so they become this fp32 module's weights."""
        state = dict(state)
        masters = state.pop(MASTER_WEIGHTS, None)
        self.optimizer.load_state_dict(state)
        if masters is not None:
            params = [p for g in self.optimizer.param_groups for p in g["params"]]
            with torch.no_grad():
                for p, master in zip(params, masters, strict=True):
                    p.copy_(master.to(p.dtype))


class ZeroEngine:
    """Several processes (or one) under DeepSpeed ZeRO. The client optimizer is our torch AdamW
    (DeepSpeedCPUAdam with offload); DeepSpeed keeps its fp32 state sharded across ranks."""

    def __init__(self, module: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler,
                 settings: DeepSpeedSettings, micro_batch_size: int, max_grad_norm: float):
        import deepspeed

        self.settings, self.scheduler = settings, scheduler
        # The client optimizer's parameter order and hyper-parameters, captured before
        # DeepSpeed swaps its own flat shards in: the portable state is written in this order.
        self._params = [p for g in optimizer.param_groups for p in g["params"]]
        self._group_sizes = [len(g["params"]) for g in optimizer.param_groups]
        self.client_optimizer = optimizer
        self.model, self.optimizer, _, _ = deepspeed.initialize(
            model=module, optimizer=optimizer,
            config=deepspeed_config(settings, micro_batch_size, max_grad_norm))
        self.module = self.model.module

    def zero_grad(self) -> None:
        self.model.zero_grad()

    def backward(self, loss: torch.Tensor, last: bool) -> None:
        # Our loss is already scaled for accumulation (grpo.LossScale): DeepSpeed must not
        # divide it again, and it steps only when told this is the last micro-batch.
        self.model.set_gradient_accumulation_boundary(last)
        self.model.backward(loss, scale_wrt_gas=False)

    def discard_step(self, loss: torch.Tensor) -> None:
        """Drop this step's gradients on every rank, as one process would (a micro-batch's
        loss was not finite on some rank). Under ZeRO 1-3 earlier micro-batches' gradients
        may already sit reduced in DeepSpeed's partitions: a NaN backward at the boundary lets
        DeepSpeed's own overflow check discard the whole step, on every rank alike."""
        if self.settings.stage == 0:  # whole gradients, not reduced before the boundary
            self.zero_grad()
            return
        self.backward(loss * math.nan, last=True)
        self.model.step()
        self.model.zero_grad()

    def step(self) -> float:
        """One optimizer step; NonFiniteLoss (nothing applied, the schedule not advanced)
        when the gradients are not finite, as in one process."""
        self.model.set_gradient_accumulation_boundary(True)
        if self.settings.stage == 0:  # whole, already averaged gradients: no norm reported
            norm = self._plain_grad_norm()
            if not math.isfinite(norm):
                self.zero_grad()
                raise NonFiniteLoss(f"non-finite gradient norm {norm}; update skipped")
            self.model.step()
        else:
            skipped = self.model.skipped_steps
            self.model.step()  # ZeRO checks for NaN/inf gradients itself and skips such a step
            if self.model.skipped_steps > skipped:
                raise NonFiniteLoss(f"non-finite gradients under ZeRO-{self.settings.stage}; "
                                    "update skipped")
            norm = float(self.model.get_global_grad_norm())
        self.scheduler.step()
        return norm

    def _plain_grad_norm(self) -> float:
        grads = [p.grad for p in self.module.parameters() if p.grad is not None]
        return (
            float(
                torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
            )
            if grads
            else 0.0
        )

    @contextlib.contextmanager
    def gathered(self) -> Iterator[torch.nn.Module]:
        """The whole module on every rank while inside (ZeRO-3 shards parameters; a collective,
        so every rank must enter it the same number of times)."""
        if self.settings.stage != 3:
            yield self.module
            return
        import deepspeed

        with deepspeed.zero.GatheredParameters(list(self.module.parameters()), modifier_rank=None):
            yield self.module

    def full_state_dict(self, every_rank: bool = False) -> dict[str, torch.Tensor]:
        """Full fp32 master weights by name (collective: call on every rank). Only rank 0,
        which writes checkpoints, keeps host copies, unless `every_rank`."""
        if self.settings.stage == 0:  # every rank holds everything
            return self.module.state_dict()
        from deepspeed.utils import safe_get_full_fp32_param

        dtype = next(self.module.parameters()).dtype
        keep = every_rank or distributed.is_main()
        # Frozen weights are not the optimizer's: the base under LoRA adapters is skipped (a
        # policy's PEFT folder, a critic's checkpoint keep only what trains), any other frozen
        # weight is read or gathered.
        frozen_wanted = not any(has_adapters(m) for m in self.module.modules())
        full = {}
        for name, p in self.module.named_parameters():
            if p.requires_grad:
                tensor = safe_get_full_fp32_param(p)  # collective
            elif frozen_wanted:
                tensor = self._frozen_whole(p)  # collective under ZeRO-3
            else:
                continue
            if keep:
                full[name] = tensor.detach().to(dtype).cpu()
        return full

    def _frozen_whole(self, p: torch.nn.Parameter) -> torch.Tensor:
        if self.settings.stage != 3:
            return p
        import deepspeed

        with deepspeed.zero.GatheredParameters([p]):
            return p.detach().clone()

    def _base_state(self) -> dict:
        return self.optimizer.optimizer.state

    def _flat_shards(self) -> list[torch.Tensor]:
        shards = getattr(self.optimizer, "fp32_partitioned_groups_flat", None)  # ZeRO-3
        # 0-2
        return list(
            shards if shards is not None else self.optimizer.single_partition_of_fp32_groups
        )

    def optimizer_state(self, every_rank: bool = False) -> dict[str, Any]:
        """torch AdamW's state_dict layout with full tensors (collective: call on every rank;
        the moments are kept on rank 0 only, unless `every_rank`)."""
        masters = self._master_weights(every_rank or distributed.is_main())
        if self.settings.stage == 0:
            return {**self.client_optimizer.state_dict(), **masters}
        from deepspeed.utils import safe_get_full_optimizer_state

        steps = [s["step"] for s in self._base_state().values() if "step" in s]
        step = torch.as_tensor(steps[0] if steps else 0.0, dtype=torch.float32).cpu()
        state, keep = {}, every_rank or distributed.is_main()
        if steps:
            for i, p in enumerate(self._params):
                moments = {k: safe_get_full_optimizer_state(p, k)  # collective
                           for k in ("exp_avg", "exp_avg_sq")}
                if keep:
                    state[i] = {"step": step.clone(),
                                **{k: v.detach().cpu() for k, v in moments.items()}}
        groups, start = [], 0
        for g, size in zip(self.client_optimizer.param_groups, self._group_sizes):
            groups.append({**{k: v for k, v in g.items() if k != "params"},
                           "params": list(range(start, start + size))})
            start += size
        return {"state": state, "param_groups": groups, **masters}

    def _master_weights(self, keep: bool) -> dict[str, list[torch.Tensor]]:
        """{MASTER_WEIGHTS: full fp32 masters} under bf16 (collective), else nothing."""
        if not self.settings.bf16:
            return {}
        from deepspeed.utils import safe_get_full_fp32_param

        full = [safe_get_full_fp32_param(p) for p in self._params]  # collective
        return {MASTER_WEIGHTS: [t.detach().float().cpu() for t in full]} if keep else {}

    def _load_master_weights(self, masters: list[torch.Tensor] | None) -> None:
        if masters is None or not self.settings.bf16:
            return  # fp32 training: the policy folder's weights are the masters
        from deepspeed.utils import safe_set_full_fp32_param

        for p, master in zip(self._params, masters, strict=True):
            safe_set_full_fp32_param(p, master.to(torch.float32))

    def load_optimizer_state(self, saved: dict[str, Any]) -> None:
        """Scatter a portable (full) AdamW state into this rank's shards."""
        saved = dict(saved)
        masters = saved.pop(MASTER_WEIGHTS, None)
        if self.settings.stage == 0:
            self.client_optimizer.load_state_dict(saved)
            self._load_master_weights(masters)
            return
        from deepspeed.utils import safe_set_full_optimizer_state

        if len(saved["param_groups"]) != len(self.client_optimizer.param_groups) or \
                sum(len(g["params"]) for g in saved["param_groups"]) != len(self._params):
            raise ValueError(
                "the checkpoint's optimizer state does not fit this model's parameters"
            )
        for g, sg in zip(self.client_optimizer.param_groups, saved["param_groups"]):
            g.update({k: v for k, v in sg.items() if k != "params"})
        self._load_master_weights(masters)
        if not saved["state"]:
            return  # saved before the first step: nothing to restore
        step = float(next(iter(saved["state"].values()))["step"])
        # AdamW creates its state lazily at the first step; create it now so it can be filled.
        on_device = any(g.get("fused") or g.get("capturable")
                        for g in self.client_optimizer.param_groups)
        for shard in self._flat_shards():
            self._base_state()[shard] = {"step": step_tensor(step, shard, on_device),
                                         "exp_avg": torch.zeros_like(shard),
                                         "exp_avg_sq": torch.zeros_like(shard)}
        # ZeRO 0-2 link their views now
        if hasattr(self.optimizer, "_lazy_init_hp_params_optimizer_state"):
            self.optimizer._lazy_init_hp_params_optimizer_state()
        for i, p in enumerate(self._params):
            for key in ("exp_avg", "exp_avg_sq"):
                safe_set_full_optimizer_state(p, saved["state"][i][key], key)


def step_tensor(step: float, shard: torch.Tensor, on_device: bool) -> torch.Tensor:
    """AdamW's `step` state: a CPU scalar, except for the fused and capturable kernels, which
    read it on the parameters' device (a CPU step makes a resumed fused CUDA run fail)."""
    return torch.tensor(step, dtype=torch.float32, device=shard.device if on_device else "cpu")


def reference_under_zero3(reference: torch.nn.Module) -> torch.nn.Module:
    """The frozen reference sharded like the policy (ZeRO-3 inference): each rank keeps 1/N."""
    import deepspeed

    config = {"train_micro_batch_size_per_gpu": 1, "zero_optimization": {"stage": 3},
              "steps_per_print": 2**62}
    engine = deepspeed.initialize(model=reference, config=config)[0]
    engine.eval()
    return engine


def make_engine(policy, optimizer, scheduler, *, deepspeed: DeepSpeedSettings | None,
                micro_batch_size: int, max_grad_norm: float):
    if deepspeed is None:
        if distributed.launched_multi_process():
            raise RuntimeError(
                "several processes need a sharded engine: add deepspeed=ddp (plain data parallel), "
                "deepspeed=zero2 or deepspeed=zero3 to the command line (README 'Scaling up')")
        return TorchEngine(policy, optimizer, scheduler, max_grad_norm)
    return ZeroEngine(policy, optimizer, scheduler, deepspeed, micro_batch_size, max_grad_norm)
