"""Which input pixels a model uses for a character: seed 002's input minimisation.

With the weights fixed, the input ``X`` is optimised, starting from the captcha, to minimise

    || F(X) - F(X0) ||^2 + c * sum(X)

where ``F`` is the chosen output of one recognised character (its centre map, or its
log-probability at its position) and ``X`` is the image as ink (0 = background, 1 = full
ink; seed 002's captchas were light text on dark). Pixels the network does not need for that
output fade to background; what stays is what it reads the character from. Every recognised
character is optimised at once, as one batch, since the network is in evaluation mode.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from captchalab.data.preprocess import ImageError, Preprocessing
from captchalab.fileio import atomic_write_bytes, atomic_write_text
from captchalab.runtime.decoded import Decoded
from captchalab.runtime.decoders import get_decoder
from captchalab.runtime.model_file import load_model_file
from captchalab.runtime.torch_backend import build_model

SALIENCY_C = 0.1  # seed 002's weight of the input's total intensity
HEATMAP_BAND = 2  # output columns either side of a heatmap peak that belong to its character

Selector = Callable[[torch.Tensor, Decoded, int], torch.Tensor]


def _ctc(outputs: torch.Tensor, decoded: Decoded, k: int) -> torch.Tensor:
    """The symbol's log-probability at the frame of its centre, for a batch of (T, C) outputs."""
    frame = int(round(decoded.positions[k]))
    return outputs[:, frame, decoded.labels[k]].unsqueeze(1)


def _positions(outputs: torch.Tensor, decoded: Decoded, k: int) -> torch.Tensor:
    return outputs[:, k, decoded.labels[k]].unsqueeze(1)


def _presence(outputs: torch.Tensor, decoded: Decoded, k: int) -> torch.Tensor:
    return outputs[:, decoded.labels[k]].unsqueeze(1)


def _heatmap(outputs: torch.Tensor, decoded: Decoded, k: int) -> torch.Tensor:
    """The symbol's centre map in a band of columns around its peak (seed 002 kept only the
    map of the chosen character)."""
    column = int(decoded.positions[k])
    first, last = max(0, column - HEATMAP_BAND), column + HEATMAP_BAND + 1
    band = outputs[:, decoded.labels[k], :, first:last]
    return band.flatten(1)


SELECTORS: dict[str, Selector] = {"ctc": _ctc, "positions": _positions,
                                  "presence": _presence, "heatmap": _heatmap}


@dataclass
class CharacterSaliency:
    """One recognised character: its minimised image and how the chosen output held up."""

    symbol: str
    confidence: float
    minimised: np.ndarray  # (H, W) ink in [0, 1]
    ink_before: float  # total ink of the input, in pixels of full ink
    ink_after: float
    output_before: float  # the chosen output (mean of its values) on the original image
    output_after: float  # ... and on the minimised one

    def to_dict(self) -> dict:
        return {"symbol": self.symbol, "confidence": round(self.confidence, 4),
                "ink_before": round(self.ink_before, 2), "ink_after": round(self.ink_after, 2),
                "ink_kept": round(self.ink_after / max(self.ink_before, 1e-9), 4),
                "output_before": round(self.output_before, 4),
                "output_after": round(self.output_after, 4)}


@dataclass
class Saliency:
    original: np.ndarray  # (H, W) ink in [0, 1], as the model sees the image
    reading: str
    characters: list[CharacterSaliency]
    c: float
    steps: int

    def to_dict(self) -> dict:
        return {"reading": self.reading, "c": self.c, "steps": self.steps,
                "characters": [character.to_dict() for character in self.characters]}


def minimise_input(network: torch.nn.Module, preprocessing: Preprocessing, ink: np.ndarray,
                   selectors: list[Callable[[torch.Tensor], torch.Tensor]],
                   c: float = SALIENCY_C, steps: int = 300, learning_rate: float = 0.02
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Seed 002's minimisation of one ``(H, W)`` ink image for each selector (a function of
    the network's batched output); returns the ``(K, H, W)`` minimised inks and each selected
    output's mean before and after."""
    network = network.eval()
    for parameter in network.parameters():
        parameter.requires_grad_(False)
    mean, std = preprocessing.mean, preprocessing.std

    def forward(inks: torch.Tensor) -> torch.Tensor:
        """``Preprocessing.normalize`` of the pixels ``1 - ink``, in torch for the gradient."""
        return network(((1.0 - inks) - mean) / std)

    count = len(selectors)
    start = torch.from_numpy(ink).float()[None, None].repeat(count, 1, 1, 1)
    with torch.no_grad():
        outputs = forward(start)
        targets = [select(outputs)[i] for i, select in enumerate(selectors)]
    inks = start.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([inks], lr=learning_rate)
    for _ in range(steps):
        outputs = forward(inks)
        kept = sum(((select(outputs)[i] - targets[i]) ** 2).sum()
                    for i, select in enumerate(selectors))
        loss = kept + c * inks.sum()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            inks.clamp_(0.0, 1.0)
    with torch.no_grad():
        outputs = forward(inks)
        after = [float(select(outputs)[i].mean()) for i, select in enumerate(selectors)]
    before = [float(t.mean()) for t in targets]
    return inks.detach()[:, 0].numpy(), np.array(before), np.array(after)


def saliency(model_path: str | Path, image: str | Path, c: float = SALIENCY_C,
             steps: int = 300) -> Saliency:
    """Minimise the image at ``image`` once per character ``model_path`` reads in it."""
    model_file = load_model_file(model_path)
    card = model_file.card
    preprocessing = card.preprocessing
    network = build_model(model_file, str(model_path)).float()
    try:
        pixels = preprocessing.load(image)  # as the model sees it
    except ImageError as error:
        raise ImageError(f"{image}: {error}") from None
    ink = 1.0 - pixels.astype(np.float32) / 255.0  # 0 where the page is white, 1 where black
    decoder = get_decoder(card.decoder)
    with torch.no_grad():
        outputs = network(torch.from_numpy(preprocessing.normalize(pixels[None])))
    decoded = decoder(outputs.numpy(), card.decoding)[0]
    symbols = card.alphabet
    reading = "".join(symbols[label - 1] for label in decoded.labels)
    select = SELECTORS[decoder.name]
    selectors = [lambda out, k=k: select(out, decoded, k) for k in range(len(decoded.labels))]
    characters: list[CharacterSaliency] = []
    if selectors:
        minimised, before, after = minimise_input(network, preprocessing, ink, selectors, c,
                                                  steps)
        for k, label in enumerate(decoded.labels):
            characters.append(CharacterSaliency(
                symbols[label - 1], decoded.char_confidences[k], minimised[k],
                float(ink.sum()), float(minimised[k].sum()), float(before[k]),
                float(after[k])))
    return Saliency(ink, reading, characters, c, steps)


def saliency_figure(result: Saliency) -> bytes:
    """The original once, then each character's kept ink in red over a faint copy of the
    captcha (so it shows where in the image it is), titled with the share of ink kept."""
    from captchalab.reporting.charts import png_bytes, pyplot

    plt = pyplot()
    panels = 1 + len(result.characters)
    columns = min(panels, 3)
    rows = -(-panels // columns)
    aspect = result.original.shape[1] / result.original.shape[0]
    figure, axes = plt.subplots(rows, columns, figsize=(columns * 1.3 * aspect, 1.5 * rows + 0.3),
                                squeeze=False)
    for axis in axes.flat:
        axis.set_axis_off()
    axes[0, 0].imshow(1.0 - result.original, cmap="gray", vmin=0, vmax=1)
    axes[0, 0].set_title(f"original, read {result.reading!r}", fontsize=9)
    faint = 1.0 - 0.25 * result.original[..., None]  # the captcha, light grey
    red = np.array([0.75, 0.05, 0.05])
    for axis, character in zip(list(axes.flat)[1:], result.characters):
        stretch = max(float(character.minimised.max()), 1e-6)  # faint ink made visible
        alpha = (character.minimised / stretch)[..., None]
        axis.imshow(faint * (1 - alpha) + red * alpha)
        axis.set_axis_on()
        axis.set_xticks([])
        axis.set_yticks([])
        kept = character.ink_after / max(character.ink_before, 1e-9)
        axis.set_title(f"{character.symbol!r}: {kept:.1%} of the ink kept", fontsize=9)
    if not result.characters:
        axes[0, 0].set_title(f"original: nothing read, {result.reading!r}", fontsize=9)
    figure.tight_layout()
    return png_bytes(figure)


def write_saliency(result: Saliency, out_dir: str | Path) -> Path:
    """``saliency.png`` (the original, then each character's minimised image) and
    ``saliency.json`` in ``out_dir``."""
    out = Path(out_dir)
    atomic_write_bytes(out / "saliency.png", saliency_figure(result))
    atomic_write_text(out / "saliency.json", json.dumps(result.to_dict(), indent=2) + "\n")
    return out
