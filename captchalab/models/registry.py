"""Model families by name: ``build("crnn", ...)``. A new family is one module that registers.

The registry is the one list of families: help texts, ``compare``'s default families, the
CLI's family options and the tests all read it.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import TypeVar

from captchalab.models.family import Family

FAMILIES: dict[str, type[Family]] = {}
T = TypeVar("T", bound=type[Family])


def register(name: str) -> Callable[[T], T]:
    """Class decorator that makes a family available under ``name``."""

    def add(cls: T) -> T:
        if name in FAMILIES:
            raise ValueError(f"model family {name!r} is registered twice")
        FAMILIES[name] = cls
        cls.family = name
        return cls

    return add


def list_families() -> list[str]:
    """Every registered family, in registration order (the default, crnn, first)."""
    return list(FAMILIES)


def describe_families() -> str:
    """``name (summary), ...`` of every family, for help texts."""
    return ", ".join(f"{name} ({cls.summary})" for name, cls in FAMILIES.items())


def family_class(name: str) -> type[Family]:
    if name not in FAMILIES:
        known = ", ".join(FAMILIES) or "none"
        raise ValueError(f"unknown model family {name!r} (known: {known})")
    return FAMILIES[name]


def build(name: str, **config) -> Family:
    """A new model of family ``name`` from its JSON-able ``config``; ``model.config`` records
    every constructor argument (defaults included) so the model file rebuilds it exactly."""
    cls = family_class(name)
    bound = inspect.signature(cls).bind(**config)
    bound.apply_defaults()
    model = cls(**bound.arguments)
    model.config = {k: list(v) if isinstance(v, tuple) else v
                    for k, v in bound.arguments.items()}
    return model


def completed_config(name: str, config: dict) -> dict:
    """A model file's ``config`` with the constructor's defaults for the arguments it lacks
    (a file written before an argument existed rebuilds as it was trained)."""
    parameters = inspect.signature(family_class(name)).parameters
    defaults = {k: p.default for k, p in parameters.items() if p.default is not p.empty}
    return {**{k: list(v) if isinstance(v, tuple) else v for k, v in defaults.items()},
            **config}


def options_for(name: str, options: dict) -> dict:
    """The subset of ``options`` that family ``name`` takes (e.g. ``slices`` only for slice)."""
    taken = {option.name for option in family_class(name).options}
    return {key: value for key, value in options.items() if key in taken}


def families_taking(option: str) -> list[str]:
    """The families that take the family option ``option``."""
    return [name for name, cls in FAMILIES.items()
            if any(o.name == option for o in cls.options)]
