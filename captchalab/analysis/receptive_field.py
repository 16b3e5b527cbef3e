"""Receptive fields, measured the way seed 002 did and computed from the layers.

Seed 002 set every convolution weight to the same constant and every bias to zero, fed a
single non-zero pixel, and looked at the spot it made in the output: close to a Gaussian,
and much narrower than the sum of the kernel sizes. With positive constant weights the
network is linear in its input, so the spot an input pixel makes in the output and the
input pixels one output position draws on are the same shape; this module measures the
latter (the gradient of one central output position with respect to the input), which
gives the spot at input-pixel resolution rather than at the output's stride.
"""

from __future__ import annotations

import copy
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn


@dataclass(frozen=True)
class Extent:
    """The receptive field along one axis, in input pixels."""

    theoretical: int  # every input pixel that can reach the output position
    support: int  # pixels with a non-negligible weight in the measured spot
    gaussian_sigma: float  # standard deviation of the spot, seen as a distribution
    gaussian_fit: float  # R^2 of a Gaussian with that sigma against the spot (1 = exact)
    stride: int  # input pixels between neighbouring output positions


@dataclass(frozen=True)
class ReceptiveField:
    x: Extent
    y: Extent
    kernel_sum: int  # the sum of the kernel sizes along x, the seed's naive expectation
    spot: np.ndarray  # (H, W) measured weights of the input pixels, max 1

    def to_dict(self) -> dict:
        return {"x": asdict(self.x), "y": asdict(self.y), "kernel_sum": self.kernel_sum}


def _layers(network: nn.Module) -> list[nn.Module]:
    return [m for m in network.modules() if isinstance(m, (nn.Conv2d, nn.MaxPool2d,
                                                            nn.AvgPool2d))]


def _pair(value) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else tuple(value)


def theoretical_receptive_field(network: nn.Module) -> tuple[tuple[int, int], tuple[int, int]]:
    """``((height, width), (stride_y, stride_x))`` of the network's convolutions and pools,
    in the order they are registered (a plain feed-forward stack)."""
    size, jump = [1, 1], [1, 1]
    for layer in _layers(network):
        kernel, stride = _pair(layer.kernel_size), _pair(layer.stride or layer.kernel_size)
        dilation = _pair(getattr(layer, "dilation", 1))
        for axis in (0, 1):
            size[axis] += (kernel[axis] - 1) * dilation[axis] * jump[axis]
            jump[axis] *= stride[axis]
    return (size[0], size[1]), (jump[0], jump[1])


def _constant_copy(network: nn.Module) -> nn.Module:
    """Seed 002's network: every convolution weight constant, biases zero, batch norm off;
    max pooling becomes average pooling, so that the network is linear in a positive input
    (a max would route the whole gradient through one pixel of each window)."""
    constant = copy.deepcopy(network).float().eval()
    for parent in list(constant.modules()):
        for name, child in parent.named_children():
            if isinstance(child, nn.MaxPool2d):
                setattr(parent, name, nn.AvgPool2d(child.kernel_size, child.stride,
                                                   child.padding, ceil_mode=child.ceil_mode))
    with torch.no_grad():
        for layer in constant.modules():
            if isinstance(layer, nn.Conv2d):
                layer.weight.fill_(1.0 / layer.weight[0].numel())
                if layer.bias is not None:
                    layer.bias.zero_()
            elif isinstance(layer, nn.BatchNorm2d):
                layer.reset_parameters()
                layer.reset_running_stats()
                layer.eps = 0.0
    return constant


def _extent(profile: np.ndarray, theoretical: int, stride: int) -> Extent:
    weights = profile / profile.sum()
    positions = np.arange(len(profile), dtype=np.float64)
    mean = float((weights * positions).sum())
    sigma = float(np.sqrt((weights * (positions - mean) ** 2).sum()))
    nonzero = np.flatnonzero(profile > profile.max() * 1e-6)
    gaussian = np.exp(-0.5 * ((positions - mean) / max(sigma, 1e-9)) ** 2)
    gaussian *= weights.max() / gaussian.max()
    fit = 1.0 - float(((weights - gaussian) ** 2).sum() / ((weights - weights.mean()) ** 2).sum())
    return Extent(theoretical, int(nonzero[-1] - nonzero[0] + 1), round(sigma, 3),
                  round(fit, 4), stride)


def measure_receptive_field(network: nn.Module, channels: int = 1) -> ReceptiveField:
    """Measure the spot of ``network`` (a feature extractor: images -> maps) with seed 002's
    constant weights; the input is made large enough for the whole theoretical field."""
    (rf_h, rf_w), (stride_y, stride_x) = theoretical_receptive_field(network)
    height = 2 * rf_h + 4 * stride_y
    width = 2 * rf_w + 4 * stride_x
    constant = _constant_copy(network)
    image = torch.ones(1, channels, height, width, requires_grad=True)  # every unit active
    maps = constant(image)
    _, _, rows, columns = maps.shape
    maps[0, :, rows // 2, columns // 2].sum().backward()
    spot = image.grad[0].sum(dim=0).abs().double().numpy()
    spot = spot / spot.max()
    kernel_sum = sum(_pair(layer.kernel_size)[1] for layer in _layers(network))
    return ReceptiveField(_extent(spot.sum(axis=0), rf_w, stride_x),
                          _extent(spot.sum(axis=1), rf_h, stride_y), kernel_sum,
                          spot.astype(np.float32))


def glyph_width(data_dir: str | Path, input_width: int) -> float:
    """Typical width of one character in model-input pixels: the input width over the
    median label length of the folder's labels."""
    from captchalab.data import read_labelled_folder

    samples = read_labelled_folder(data_dir).samples
    if not samples:
        raise ValueError(f"{data_dir}: no labelled images to measure glyphs on")
    return input_width / float(np.median([len(s.label) for s in samples]))


def receptive_field_report(model_path: str | Path, data_dir: str | Path | None = None
                           ) -> tuple[dict, ReceptiveField]:
    """Seed 002's measurement on a model file's convolutional backbone, with a verdict on
    whether one output position can see a whole character when ``data_dir`` is given."""
    from captchalab.runtime.model_file import load_model_file
    from captchalab.runtime.torch_backend import build_model

    model_file = load_model_file(model_path)
    model = build_model(model_file, str(model_path))
    field = measure_receptive_field(model.backbone)
    report = {"model": str(model_path), "family": model_file.card.family,
              "network": "the shared convolutional backbone", **field.to_dict(),
              "effective_width_x": round(4 * field.x.gaussian_sigma, 1),
              "half_maximum_width_x": round(2.3548 * field.x.gaussian_sigma, 1)}
    if data_dir is not None:
        width = glyph_width(data_dir, model_file.card.preprocessing.width)
        report["glyph_width"] = round(width, 1)
        report["sees_whole_glyph"] = {
            "theoretical": field.x.theoretical >= width,
            "effective": report["effective_width_x"] >= width}
    return report, field


def receptive_field_figure(report: dict, field: ReceptiveField) -> bytes:
    """The measured spot beside its horizontal profile, the fitted Gaussian, the theoretical
    field and (when measured) the typical glyph width."""
    from captchalab.reporting.charts import png_bytes, pyplot

    plt = pyplot()
    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.2))
    spot = field.spot / max(float(field.spot.max()), 1e-12)
    image = left.imshow(spot, cmap="magma", vmin=0, vmax=1)
    left.set_title("weight of each input pixel for one output position", fontsize=10)
    left.set_xlabel("input x, pixels")
    left.set_ylabel("input y, pixels")
    figure.colorbar(image, ax=left, fraction=0.046, pad=0.04,
                    label="weight, relative to the largest")
    profile = field.spot.sum(axis=0)
    profile = profile / profile.max()
    positions = np.arange(len(profile))
    centre = float((profile * positions).sum() / profile.sum())
    sigma = field.x.gaussian_sigma
    right.plot(positions - centre, profile, label="measured (constant weights)")
    right.plot(positions - centre, np.exp(-0.5 * ((positions - centre) / sigma) ** 2), "--",
               label=f"Gaussian, sigma {sigma:.1f} px (R² {field.x.gaussian_fit:.3f})")
    half = field.x.theoretical / 2
    right.axvspan(-half, half, color="grey", alpha=0.15,
                  label=f"theoretical field, {field.x.theoretical} px")
    if "glyph_width" in report:
        glyph = report["glyph_width"] / 2
        right.axvline(-glyph, color="firebrick", lw=1)
        right.axvline(glyph, color="firebrick", lw=1,
                      label=f"typical glyph, {report['glyph_width']} px")
    right.set_xlim(-half * 1.3, half * 1.3)
    right.set_xlabel("input x from the centre of the field, pixels")
    right.set_ylabel("weight (summed over y), relative to the peak")
    right.set_title("horizontal profile", fontsize=10)
    right.legend(fontsize=8)
    figure.tight_layout()
    return png_bytes(figure)


def write_receptive_field(report: dict, field: ReceptiveField, out_dir: str | Path) -> Path:
    """``receptive_field.json`` and ``receptive_field.png`` in ``out_dir``, written atomically."""
    from captchalab.fileio import atomic_write_bytes, atomic_write_text

    out = Path(out_dir)
    atomic_write_text(out / "receptive_field.json", json.dumps(report, indent=2) + "\n")
    atomic_write_bytes(out / "receptive_field.png", receptive_field_figure(report, field))
    return out
