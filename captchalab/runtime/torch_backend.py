"""Run a model file with PyTorch (the training framework): build the family, load weights."""

from __future__ import annotations

import numpy as np
import torch

from captchalab.runtime.model_file import ModelFile, ModelFileError


def resolve_device(device: str = "auto") -> torch.device:
    """'auto' -> CUDA when available, else CPU; 'cpu' and 'cuda[:n]' are taken as given."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("`device` cuda was asked for but no CUDA device is available")
    return torch.device(device)


def build_model(model_file: ModelFile, path: str = "model") -> torch.nn.Module:
    """The family's network with the file's weights, checked name by name and shape by shape."""
    from captchalab.models import build

    card = model_file.card
    try:
        model = build(card.family, **card.config)
    except (KeyError, TypeError, ValueError) as error:
        raise ModelFileError(f"{path}: cannot build the model it describes ({error})") from None
    expected = model.state_dict()
    missing = sorted(set(expected) - set(model_file.tensors))
    unexpected = sorted(set(model_file.tensors) - set(expected))
    if missing or unexpected:
        raise ModelFileError(
            f"{path}: weights do not match the {card.family} model "
            f"(missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    for name, tensor in expected.items():
        shape = tuple(model_file.tensors[name].shape)
        if shape != tuple(tensor.shape):
            raise ModelFileError(
                f"{path}: tensor {name!r} has shape {shape}, "
                f"the model expects {tuple(tensor.shape)}"
            )
    model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in model_file.tensors.items()})
    return model.eval()


def state_to_numpy(model: torch.nn.Module) -> dict[str, np.ndarray]:
    """A state dict as numpy arrays, ready for :func:`save_model_file`."""
    return {k: v.detach().cpu().numpy().copy() for k, v in model.state_dict().items()}


class TorchBackend:
    """Forward pass of a PyTorch model: normalised batch in, numpy log-probabilities out."""

    def __init__(self, model_file: ModelFile, path: str = "model", device: str = "cpu") -> None:
        self.device = resolve_device(device)
        self.model = build_model(model_file, path).to(self.device)

    @torch.inference_mode()
    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self.model(torch.from_numpy(batch).to(self.device)).float().cpu().numpy()
