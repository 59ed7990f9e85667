"""Methods added to vLLM's worker (`worker_extension_cls`): receive the policy's weights.

Imported by vLLM inside its worker, so it needs nothing from hybrid_rl beyond torch.
"""
from __future__ import annotations

from typing import Iterable

import torch


class WeightSyncWorker:
    def hybrid_rl_load_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> list[str]:
        """Load checkpoint-format (Hugging Face names) weights in place; returns the names of
        the engine's parameters that received nothing, so the caller can refuse a partial sync.

        The same steps as vLLM's own in-place reload, with its record of what was loaded kept:
        vLLM only logs a warning for parameters that were not loaded."""
        from vllm.model_executor.model_loader.reload.layerwise import (
            finalize_layerwise_reload,
            initialize_layerwise_reload,
        )

        model = self.model_runner.get_model()
        expected = {name for name, _ in model.named_parameters()}
        initialize_layerwise_reload(model)
        loaded = model.load_weights(iter(weights))
        finalize_layerwise_reload(model, self.model_runner.model_config)
        return sorted(expected - set(loaded or ()))

    def hybrid_rl_placement(self) -> dict:
        """Which process and device this engine's worker runs as (tests: one per rank)."""
        return {"rank": int(self.rank), "local_rank": int(self.local_rank),
                "device": str(self.device)}
