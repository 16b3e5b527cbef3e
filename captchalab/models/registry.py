"""Model families by name: ``build("crnn", ...)``. A new family is one module that registers."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from torch import nn

FAMILIES: dict[str, type[nn.Module]] = {}
T = TypeVar("T", bound=type[nn.Module])


def register(name: str) -> Callable[[T], T]:
    """Class decorator that makes a family available under ``name``."""

    def add(cls: T) -> T:
        if name in FAMILIES:
            raise ValueError(f"model family {name!r} is registered twice")
        FAMILIES[name] = cls
        cls.family = name
        return cls

    return add


def build(name: str, **config) -> nn.Module:
    """A new model of family ``name`` built from its JSON-able ``config``."""
    if name not in FAMILIES:
        known = ", ".join(sorted(FAMILIES)) or "none"
        raise ValueError(f"unknown model family {name!r} (known: {known})")
    return FAMILIES[name](**config)
