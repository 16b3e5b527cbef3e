"""The model file: one ``.safetensors`` holding the weights plus JSON metadata.

Nothing is ever unpickled: tensors are raw safetensors data and everything else is JSON
under the ``captchalab`` metadata key. Torch-free, so lightweight runtimes can read it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import load as load_tensors
from safetensors.numpy import save as save_tensors

from captchalab.fileio import atomic_write_bytes

FORMAT_NAME = "captchalab-model"
FORMAT_VERSION = 1
METADATA_KEY = "captchalab"


class ModelFileError(ValueError):
    """A model file that cannot be used; the message is one line naming the file."""


@dataclass
class ModelFile:
    """Weights (numpy arrays by parameter name) and metadata (a JSON-able dict)."""

    tensors: dict[str, np.ndarray]
    metadata: dict

    @property
    def family(self) -> str:
        return self.metadata["family"]


def save_model_file(path: str | Path, tensors: dict[str, np.ndarray], metadata: dict) -> Path:
    """Write a model file atomically; ``metadata`` gains the format name and version."""
    header = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, **metadata}
    arrays = {name: np.require(value, requirements="C") for name, value in tensors.items()}
    data = save_tensors(arrays, metadata={METADATA_KEY: json.dumps(header, sort_keys=True)})
    return atomic_write_bytes(path, data)


def read_metadata(path: str | Path) -> dict:
    """The metadata of a model file, checked for format and version (weights are not read)."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: no such model file")
    try:
        with safe_open(str(path), framework="numpy") as handle:
            raw = (handle.metadata() or {}).get(METADATA_KEY)
    except (SafetensorError, OSError, ValueError) as error:
        raise ModelFileError(f"{path}: not a safetensors model file ({error})") from None
    if raw is None:
        raise ModelFileError(f"{path}: safetensors file without captchalab metadata")
    return parse_metadata(raw, path)


def parse_metadata(raw: str, path: str | Path) -> dict:
    """The captchalab metadata JSON of a model file (any format), checked for format and
    version; ``path`` only names the file in errors."""
    try:
        metadata = json.loads(raw)
    except json.JSONDecodeError as error:
        raise ModelFileError(f"{path}: corrupt captchalab metadata ({error})") from None
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT_NAME:
        raise ModelFileError(f"{path}: not a captchalab model file")
    version = metadata.get("format_version")
    if version != FORMAT_VERSION:
        raise ModelFileError(
            f"{path}: model file format version {version}, this captchalab reads version "
            f"{FORMAT_VERSION}; retrain or use a matching captchalab"
        )
    for key in ("family", "alphabet", "preprocessing"):
        if key not in metadata:
            raise ModelFileError(f"{path}: captchalab metadata lacks {key!r}")
    return metadata


def load_model_file(path: str | Path) -> ModelFile:
    """Weights and metadata of a model file."""
    metadata = read_metadata(path)
    try:
        tensors = load_tensors(Path(path).read_bytes())
    except (SafetensorError, OSError, ValueError) as error:
        raise ModelFileError(f"{path}: unreadable weights ({error})") from None
    return ModelFile(tensors, metadata)
