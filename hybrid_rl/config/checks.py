"""The error every config problem raises, and the small checks the schemas share."""
from __future__ import annotations

from typing import Any, Iterator


class ConfigError(ValueError):
    """A config value that cannot work; the message names the field."""


def choice(name: str, value: Any, choices) -> Iterator[str]:
    if value not in choices:
        yield f"{name}: must be one of {sorted(choices)}, got {value!r}"


def positive(name: str, value, allow_zero: bool = False) -> Iterator[str]:
    if value is None:
        return
    if value < 0 or (value == 0 and not allow_zero):
        yield f"{name}: must be {'>= 0' if allow_zero else '> 0'}, got {value!r}"
