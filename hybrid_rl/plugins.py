"""Every kind of plug-in, found the same way: a `Registry` (verifiers/registry.py) per kind.

A name resolves to an object registered in this process, a built-in listed below (imported on
first use), or an entry point that an installed package declares in the kind's group. A config
may also give a mapping with `_target_` instead of a name (`build`).

- verifier (group hybrid_rl.verifiers): a batch scorer, or a class constructed with settings;
- rollout backend (hybrid_rl.rollout_backends): factory(policy, tokenizer, **rollout settings);
- task generator (hybrid_rl.task_generators): fn(num, seed, **args) returning
  (problem, answer, demonstration[, meta]) tuples;
- row format (hybrid_rl.row_formats): fn(row, where, prompt_field, answer_field) returning
  (problem, reference, demonstration, meta), raising ValueError for a bad row.
"""

from __future__ import annotations

from typing import Any

from hybrid_rl.config.checks import ConfigError
from verifiers.registry import VERIFIERS, PluginError, Registry, construct

ROLLOUT_BACKENDS = Registry("rollout backend", "hybrid_rl.rollout_backends", {
    "hf": "hybrid_rl.rollout.hf:HFRollout",
    "vllm": "hybrid_rl.rollout.vllm_backend:VLLMRollout",
})
TASK_GENERATORS = Registry("task generator", "hybrid_rl.task_generators", {
    "arithmetic": "hybrid_rl.tasks.arithmetic:arithmetic",
    "functions": "hybrid_rl.tasks.functions:functions",
    "explain": "hybrid_rl.tasks.explain:explain",
})
ROW_FORMATS = Registry("row format", "hybrid_rl.row_formats", {
    "plain": "hybrid_rl.tasks.plain:plain_row",
    "gsm8k": "hybrid_rl.tasks.gsm8k:gsm8k_row",
    "boxed": "hybrid_rl.tasks.math_solutions:boxed_row",
    "humaneval": "hybrid_rl.tasks.humaneval:humaneval_row",
})


def build(registry: Registry, spec: Any, where: str, **settings):
    """The component a config names: a registered name, or a mapping with `_target_` that
    Hydra instantiates. Raises ConfigError naming `where` (the config field) on failure."""
    if isinstance(spec, dict) or hasattr(spec, "keys"):
        from hydra.utils import instantiate

        target = spec.get("_target_")
        try:
            obj = instantiate(dict(spec))
        except Exception as exc:
            raise ConfigError(f"{where}: cannot instantiate {target!r}: {exc}") from exc
        if not callable(obj):
            raise ConfigError(f"{where}: {target!r} returned {obj!r}, not a {registry.kind}")
        return obj
    try:
        entry = registry.get(spec)
    except PluginError as exc:
        raise ConfigError(f"{where}: {exc}") from exc
    try:
        return construct(entry, **settings)
    except TypeError as exc:  # a plug-in class that needs arguments no recipe provides
        raise ConfigError(f"{where}: cannot construct {registry.kind} {spec!r}: {exc}") from exc


__all__ = [
    "PluginError",
    "ROLLOUT_BACKENDS",
    "ROW_FORMATS",
    "TASK_GENERATORS",
    "VERIFIERS",
    "build",
]
