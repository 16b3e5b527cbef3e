"""Start a model from another model's weights (``train --init``), across alphabets.

Every layer is copied as it is, except the family's ``class_outputs``: their rows score one
class each (per position, for positional families), so they are copied row by row where the
two alphabets share a symbol; a symbol the source never saw keeps its fresh initialisation.
A family's ``row_inputs`` read the feature map's rows: from a model of another input height
their weights are resampled along the rows (linearly, scaled so that a map whose rows are
alike gives the same sum), so a 32-pixel base starts a 48- or 64-pixel model. A layer
that one of the family's ``additions`` adds (crnn's ``context``, where the source reads
its columns on their own) keeps its initialisation, which changes nothing at the start.

Case-folded labels over a case-sensitive source (``n`` where the source reads ``n`` and
``N``): the row of ``n`` comes from whichever of the two the source sees more of in the
training images (``glyph_case_rows``), since a set may draw capitals and label them small.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from captchalab.data import Alphabet, Preprocessing
from captchalab.models import Family, build, completed_config
from captchalab.runtime.model_file import ModelFile, ModelFileError

SIZE_KEYS = ("num_classes", "height", "width")  # may differ between the two models


@dataclass(frozen=True)
class Transfer:
    """What ``transfer_weights`` did: symbols carried over and symbols that start fresh."""

    shared: str
    new: str
    from_other_case: str = ""  # symbols whose row came from the source's other case


def check_compatible(model: Family, source: ModelFile, path: str | Path) -> None:
    """A one-line error unless ``source`` has the family and layer sizes of ``model``."""
    family = source.card.family
    if family != model.family:
        raise ModelFileError(f"{path}: is a {family} model; it cannot start a "
                             f"{model.family} model (pass `model` {family})")
    theirs = {k: v for k, v in completed_config(family, source.card.config).items()
              if k not in SIZE_KEYS}
    ours = {k: v for k, v in model.config.items() if k not in SIZE_KEYS}
    added = additions(model, theirs)
    differing = sorted(k for k in ours.keys() | theirs.keys()
                       if ours.get(k) != theirs.get(k) and k not in added)
    if differing:
        detail = ", ".join(f"{k} {theirs.get(k)} vs {ours.get(k)}" for k in differing)
        raise ModelFileError(f"{path}: its model settings differ from this run's ({detail})")


def additions(model: Family, source_config: dict) -> dict[str, str]:
    """The family's ``additions`` that apply from a source of ``source_config`` (complete)
    to ``model``: option -> the layer its change adds."""
    return {option: layer for (option, was, now), layer in model.additions.items()
            if source_config.get(option) == was and model.config.get(option) == now}


def _class_rows(old: Alphabet, new: Alphabet, rows_from: dict[str, str]
                ) -> tuple[np.ndarray, np.ndarray]:
    """Matching class indices ``(new_rows, old_rows)``: the blank, then every symbol the
    source has (``rows_from`` may name another source symbol for one)."""
    pairs = [(0, 0)] + [(new.encode(s)[0], old.encode(rows_from.get(s, s))[0])
                        for s in new.symbols if rows_from.get(s, s) in old]
    new_rows, old_rows = zip(*pairs)
    return np.array(new_rows), np.array(old_rows)


@torch.inference_mode()
def glyph_case_rows(model: Family, source: ModelFile, alphabet: Alphabet, pixels: np.ndarray,
                    labels: list[str], preprocessing: Preprocessing, images: int = 512
                    ) -> dict[str, str]:
    """For each letter of ``alphabet`` whose other case only the source reads: that other
    case where the source, run on training images (``pixels`` and their ``labels``), gives
    it more of the probability that images with the letter have over images without it
    (capitals drawn, small letters labelled). ``model`` gives the network's settings."""
    old = Alphabet(source.card.alphabet)
    folded = [s for s in alphabet.symbols if s.swapcase() != s and s.swapcase() in old
              and s.swapcase() not in alphabet.symbols and s in old]
    pixels, labels = pixels[:images], labels[:images]
    if not folded or not len(pixels):
        return {}
    probe = build(model.family, **{**model.config, "num_classes": old.num_classes})
    transfer_weights(probe, source, old)
    probe.eval()
    outputs = [probe(torch.from_numpy(preprocessing.normalize(pixels[i : i + 64]))).float()
               for i in range(0, len(pixels), 64)]
    if outputs[0].dim() != 3 or outputs[0].shape[-1] != old.num_classes:
        return {}
    return cases_drawn(torch.cat(outputs).exp().sum(1), labels, folded, old)


def cases_drawn(mass: torch.Tensor, labels: list[str], letters: list[str], classes: Alphabet
                ) -> dict[str, str]:
    """The letters whose other case gets more of what images holding the letter add: from
    ``mass``, ``(images, classes)``, each class's probability summed over an image."""
    rows = {}
    for letter in letters:
        holds = torch.tensor([letter in label for label in labels])
        if holds.all() or not holds.any():
            continue
        excess = mass[holds].mean(0) - mass[~holds].mean(0)  # what the letter's glyph adds
        if excess[classes.encode(letter.swapcase())[0]] > excess[classes.encode(letter)[0]]:
            rows[letter] = letter.swapcase()
    return rows


def resample_rows(weight: torch.Tensor, channels: int, rows: int) -> torch.Tensor:
    """A ``(out, channels * r)`` weight over ``r`` feature rows as one over ``rows`` rows."""
    out, features = weight.shape
    old_rows = features // channels
    if old_rows * channels != features:
        raise ValueError(f"{features} input features are not {channels} channels of rows")
    if old_rows == rows:
        return weight
    grid = weight.reshape(out, channels, old_rows).float()
    if old_rows == 1:
        resampled = grid.expand(out, channels, rows)
    else:
        resampled = F.interpolate(grid, size=rows, mode="linear", align_corners=True)
    return (resampled * (old_rows / rows)).reshape(out, channels * rows)


def transfer_weights(model: Family, source: ModelFile, alphabet: Alphabet,
                     path: str | Path = "the source model",
                     rows_from: dict[str, str] | None = None) -> Transfer:
    """Load ``source``'s weights into ``model`` (which reads ``alphabet``), in place; a
    symbol of ``rows_from`` starts from the row of the source symbol it names."""
    check_compatible(model, source, path)
    old = Alphabet(source.card.alphabet)
    rows_from = rows_from or {}
    new_rows, old_rows = _class_rows(old, alphabet, rows_from)
    added = set(additions(model, completed_config(source.card.family,
                                                  source.card.config)).values())
    state = model.state_dict()
    for name, target in state.items():
        if name not in source.tensors and name.split(".")[0] in added:
            continue  # keeps its initialisation: no change to what the source reads
        if name not in source.tensors:
            raise ModelFileError(f"{path}: has no weights for layer {name}")
        value = torch.from_numpy(np.array(source.tensors[name]))
        if any(name.startswith(prefix + ".") for prefix in model.class_outputs):
            repeats = target.shape[0] // alphabet.num_classes  # positions, for positional heads
            merged = target.clone().view(repeats, alphabet.num_classes, *target.shape[1:])
            value = value.view(repeats, old.num_classes, *value.shape[1:])
            merged[:, new_rows] = value[:, old_rows].to(merged.dtype)
            value = merged.view(target.shape)
        if (value.shape != target.shape and value.dim() == 2
                and any(name == prefix + ".weight" for prefix in model.row_inputs)):
            channels = model.backbone.out_channels
            if value.shape[1] % channels == 0 and target.shape[1] % channels == 0:
                value = resample_rows(value, channels, target.shape[1] // channels)
        if value.shape != target.shape:
            raise ModelFileError(f"{path}: layer {name} has shape {tuple(value.shape)}, this "
                                 f"model needs {tuple(target.shape)}")
        state[name] = value.to(target.dtype)
    model.load_state_dict(state)
    carried = [s for s in alphabet.symbols if rows_from.get(s, s) in old]
    return Transfer("".join(carried), "".join(s for s in alphabet.symbols if s not in carried),
                    "".join(s for s in carried if rows_from.get(s, s) != s))
