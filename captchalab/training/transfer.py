"""Start a model from another model's weights (``train --init``), across alphabets.

Every layer is copied as it is, except the family's ``class_outputs``: their rows score one
class each (per position, for positional families), so they are copied row by row where the
two alphabets share a symbol; a symbol the source never saw keeps its fresh initialisation.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from captchalab.data import Alphabet
from captchalab.models import Family, completed_config
from captchalab.runtime.model_file import ModelFile, ModelFileError

SIZE_KEYS = ("num_classes", "height", "width")  # may differ between the two models


@dataclass(frozen=True)
class Transfer:
    """What ``transfer_weights`` did: symbols carried over and symbols that start fresh."""

    shared: str
    new: str


def check_compatible(model: Family, source: ModelFile, path: str | Path) -> None:
    """A one-line error unless ``source`` has the family and layer sizes of ``model``."""
    family = source.card.family
    if family != model.family:
        raise ModelFileError(f"{path}: is a {family} model; it cannot start a "
                             f"{model.family} model (pass `model` {family})")
    theirs = {k: v for k, v in completed_config(family, source.card.config).items()
              if k not in SIZE_KEYS}
    ours = {k: v for k, v in model.config.items() if k not in SIZE_KEYS}
    differing = sorted(k for k in ours.keys() | theirs.keys() if ours.get(k) != theirs.get(k))
    if differing:
        detail = ", ".join(f"{k} {theirs.get(k)} vs {ours.get(k)}" for k in differing)
        raise ModelFileError(f"{path}: its model settings differ from this run's ({detail})")


def _class_rows(old: Alphabet, new: Alphabet) -> tuple[np.ndarray, np.ndarray]:
    """Matching class indices ``(new_rows, old_rows)``: the blank, then every shared symbol."""
    pairs = [(0, 0)] + [(new.encode(s)[0], old.encode(s)[0])
                        for s in new.symbols if s in old]
    new_rows, old_rows = zip(*pairs)
    return np.array(new_rows), np.array(old_rows)


def transfer_weights(model: Family, source: ModelFile, alphabet: Alphabet,
                     path: str | Path = "the source model") -> Transfer:
    """Load ``source``'s weights into ``model`` (which reads ``alphabet``), in place."""
    check_compatible(model, source, path)
    old = Alphabet(source.card.alphabet)
    new_rows, old_rows = _class_rows(old, alphabet)
    state = model.state_dict()
    for name, target in state.items():
        if name not in source.tensors:
            raise ModelFileError(f"{path}: has no weights for layer {name}")
        value = torch.from_numpy(np.array(source.tensors[name]))
        if any(name.startswith(prefix + ".") for prefix in model.class_outputs):
            repeats = target.shape[0] // alphabet.num_classes  # positions, for positional heads
            merged = target.clone().view(repeats, alphabet.num_classes, *target.shape[1:])
            value = value.view(repeats, old.num_classes, *value.shape[1:])
            merged[:, new_rows] = value[:, old_rows].to(merged.dtype)
            value = merged.view(target.shape)
        if value.shape != target.shape:
            raise ModelFileError(f"{path}: layer {name} has shape {tuple(value.shape)}, this "
                                 f"model needs {tuple(target.shape)}")
        state[name] = value.to(target.dtype)
    model.load_state_dict(state)
    return Transfer("".join(s for s in alphabet.symbols if s in old),
                    "".join(s for s in alphabet.symbols if s not in old))
