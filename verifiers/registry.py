"""Name -> verifier registry, filled by decorators and the `hybrid_rl.verifiers` entry points."""
from __future__ import annotations

import importlib
import inspect
from importlib.metadata import entry_points
from typing import Callable, Optional, Protocol, Sequence

ENTRY_POINT_GROUP = "hybrid_rl.verifiers"


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
    - `unisolated = True`: it runs untrusted code without isolation (the code verifier with
      sandbox.backend=unsafe_local); the trainer states it in the run log and the metrics;
    - `runs_isolated = True`: the verifier isolates and time-limits its own work (the code
      verifier's sandbox), so the trainer calls it on the whole batch in-process instead of
      one sample per worker process;
    - a verifier that needs settings (a sandbox, a model folder) is registered as a class:
      `get_verifier(name, **settings)` constructs it with the settings its constructor names,
      so no verifier keeps state in module globals;
    - `close()`: called when the run ends (the code verifier stops its sandbox workers).
    """

    def __call__(
        self, completions: Sequence[str], references: Sequence[Optional[str]], **fields
    ) -> list[Optional[float]]: ...


class PluginError(LookupError):
    """A plug-in that cannot be found or loaded; the message names the kind, the name, and the
    module or the package and entry point it was to come from."""


class Registry:
    """Name -> component, the one way hybrid-rl finds a plug-in of any kind (verifiers here;
    rollout backends, task generators and row formats in hybrid_rl/plugins.py).

    A name resolves, in this order, to an object registered in this process (`register`), a
    built-in given as "module:attribute" (imported on first use, so nothing depends on import
    order), or an entry point of `group` that an installed package declares.
    """

    def __init__(self, kind: str, group: str, builtins: dict[str, str]):
        self.kind, self.group, self.builtins = kind, group, dict(builtins)
        self._registered: dict[str, object] = {}
        self._loaded: dict[str, object] = {}

    def register(self, name: str) -> Callable[[object], object]:
        """Decorator: make the object available under `name` in this process."""

        def decorate(obj):
            known = self._registered.get(name)
            if (known is not None and known is not obj) or name in self.builtins:
                raise ValueError(f"{self.kind} {name!r} is already registered by "
                                 f"{known or self.builtins[name]!r}")
            self._registered[name] = obj
            return obj

        return decorate

    def _entry_points(self) -> dict:
        return {ep.name: ep for ep in entry_points(group=self.group)}

    def names(self) -> list[str]:
        return sorted(set(self.builtins) | set(self._registered) | set(self._entry_points()))

    def get(self, name: str):
        if name in self._registered:
            return self._registered[name]
        if name not in self._loaded:
            self._loaded[name] = self._load(name)
        return self._loaded[name]

    def _load(self, name: str):
        if name in self.builtins:
            module, _, attribute = self.builtins[name].partition(":")
            where = f"built-in {self.kind} {name!r} ({self.builtins[name]})"
            return _import(module, attribute, where)
        ep = self._entry_points().get(name)
        if ep is None:
            raise PluginError(f"unknown {self.kind} {name!r}; registered: {self.names()}")
        package = ep.dist.name if getattr(ep, "dist", None) is not None else "an installed package"
        try:
            return ep.load()
        except Exception as exc:
            raise PluginError(
                f"{self.kind} {name!r}: entry point {ep.value!r} "
                f"of {package} (group {self.group!r}) "
                f"failed to load: {type(exc).__name__}: {exc}"
            ) from exc


def _import(module: str, attribute: str, where: str):
    try:
        return getattr(importlib.import_module(module), attribute)
    except (ImportError, AttributeError) as exc:
        raise PluginError(f"{where} failed to load: {type(exc).__name__}: {exc}") from exc


def construct(entry, **settings):
    """A registered entry made ready to use. A class is a factory: it is constructed with the
    settings its constructor names (e.g. the code verifier takes `sandbox`); anything else
    (a plain function) is used as it is."""
    if not isinstance(entry, type):
        return entry
    accepted = inspect.signature(entry).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in accepted.values()):
        return entry(**settings)
    return entry(**{k: v for k, v in settings.items() if k in accepted})


VERIFIERS = Registry(
    "verifier", ENTRY_POINT_GROUP, {
        "math": "verifiers.math:math_verifier", "code": "verifiers.code:CodeVerifier",
        "code_fraction": "verifiers.code:CodeFractionVerifier",
        "overlong": "verifiers.length:OverlongPenalty",
        "judge": "hybrid_rl.rewards.judge_signal:JudgeSignal",
    },
)
register_verifier = VERIFIERS.register


def available_verifiers() -> list[str]:
    return VERIFIERS.names()


def get_verifier(name: str, **settings) -> Verifier:
    """The verifier registered as `name`, constructed with `settings` when it is a class."""
    return construct(VERIFIERS.get(name), **settings)
