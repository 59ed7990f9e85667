"""Name -> verifier registry, filled by decorators and the `hybrid_rl.verifiers` entry points."""
from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import Callable, Optional, Protocol, Sequence

ENTRY_POINT_GROUP = "hybrid_rl.verifiers"
# Built-in verifiers live in these modules; importing one registers its verifiers.
_BUILTIN_MODULES = ("verifiers.math", "verifiers.code")


class Flagged(float):
    """A score that comes with a reason to doubt it (a timeout, a crashed check). It counts as
    its value, and the trainer also counts the reason (reward/<signal>/timeouts when it says
    "timed out", else reward/<signal>/errors) and, when `record` is true, writes the sample to
    the failures file. `record=False` is for outcomes that are the model's doing and common
    (model-written code that does not compile): counted every step, not logged one by one."""

    def __new__(cls, value: float, reason: str, record: bool = True):
        obj = super().__new__(cls, value)
        obj.reason = reason
        obj.record = record
        return obj

    def __reduce__(self):  # keep the reason when the score crosses a process boundary
        return (Flagged, (float(self), self.reason, self.record))


class Verifier(Protocol):
    """A batch scorer: one score per completion, None where it has no opinion.

    Optional attributes the trainer honours:
    - `runs_isolated = True`: the verifier isolates and time-limits its own work (the code
      verifier's sandbox), so the trainer calls it on the whole batch in-process instead of
      one sample per worker process;
    - `configure(cfg)`: called once at start with the run's config, before any scoring.
    """

    def __call__(
        self, completions: Sequence[str], references: Sequence[Optional[str]], **fields
    ) -> list[Optional[float]]: ...


_REGISTRY: dict[str, Verifier] = {}
_loaded = False


def register_verifier(name: str) -> Callable[[Verifier], Verifier]:
    """Decorator: make `fn` available as `verifier: <name>` in task configs."""

    def decorate(fn: Verifier) -> Verifier:
        if name in _REGISTRY and _REGISTRY[name] is not fn:
            raise ValueError(f"verifier {name!r} is already registered by {_REGISTRY[name]!r}")
        _REGISTRY[name] = fn
        return fn

    return decorate


def _load_all() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for module in _BUILTIN_MODULES:
        importlib.import_module(module)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name not in _REGISTRY:
            _REGISTRY[ep.name] = ep.load()


def available_verifiers() -> list[str]:
    _load_all()
    return sorted(_REGISTRY)


def get_verifier(name: str) -> Verifier:
    _load_all()
    if name not in _REGISTRY:
        raise KeyError(f"unknown verifier {name!r}; registered: {sorted(_REGISTRY)}")
    return _REGISTRY[name]
