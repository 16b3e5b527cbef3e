"""``Recognizer``: load a model file once, then read captchas from any image source."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from captchalab.data.alphabet import Alphabet
from captchalab.data.preprocess import ImageInput, Preprocessing
from captchalab.runtime.artifact import ModelFileError, load_model_file
from captchalab.runtime.decoded import DecodingSettings
from captchalab.runtime.decoders import get_decoder

Backend = Callable[[np.ndarray], np.ndarray]  # normalised batch -> raw network outputs


class UnorderedReadingError(ValueError):
    """Raised when a string is asked of a model that only knows which symbols are present."""


@dataclass(frozen=True)
class Prediction:
    """What the model reads in one image.

    ``characters`` is the text for families that read order; for the multilabel family
    (``ordered`` false) it is the set of symbols present, in alphabet order, and ``text``
    refuses to invent a string from it.
    """

    characters: str
    confidence: float  # probability of the whole reading
    char_confidences: tuple[float, ...]  # probability of each character
    ordered: bool = True

    @property
    def text(self) -> str:
        if not self.ordered:
            raise UnorderedReadingError(
                "this model (multilabel) tells which characters are present, not their order; "
                f"use .characters ({self.characters!r}) or train a string-reading family")
        return self.characters

    def to_dict(self) -> dict:
        if self.ordered:
            return {"text": self.characters, "confidence": self.confidence,
                    "char_confidences": list(self.char_confidences)}
        return {"characters": dict(zip(self.characters, self.char_confidences)),
                "confidence": self.confidence, "order": "unknown"}


class Recognizer:
    """A trained model ready to predict: preprocessing, network and decoder from one file.

    >>> r = Recognizer.load("runs/v2/model.onnx")  # or model.safetensors
    >>> r.predict("a.png").text
    """

    def __init__(self, metadata: dict, backend: Backend, path: str = "model") -> None:
        self.path = path
        self.metadata = metadata
        self.alphabet = Alphabet(metadata["alphabet"])
        self.preprocessing = Preprocessing.from_dict(metadata["preprocessing"])
        self.decoding = DecodingSettings.from_metadata(metadata)
        self.decoder = get_decoder(metadata.get("decoder", "ctc"))
        self.backend = backend

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu", threads: int | None = None
             ) -> Recognizer:
        """Load a model: ``.onnx`` (written by ``captchalab export``; runs with onnxruntime,
        no torch) or ``.safetensors`` (written by ``captchalab train``; runs with PyTorch).
        ``threads`` caps onnxruntime's intra-op threads (default: one per core)."""
        path = Path(path)
        if path.suffix.lower() == ".onnx":
            from captchalab.runtime.onnx_backend import OnnxBackend

            backend = OnnxBackend(path, device, threads)
            return cls(backend.metadata, backend, str(path))
        model_file = load_model_file(path)
        try:
            from captchalab.runtime.torch_backend import TorchBackend
        except ImportError:
            raise ModelFileError(
                f"{path}: running a .safetensors model needs PyTorch (pip install "
                "'captchalab[train]'); or export it with 'captchalab export' and use the "
                ".onnx file") from None
        return cls(model_file.metadata, TorchBackend(model_file, str(path), device), str(path))

    @property
    def family(self) -> str:
        return self.metadata["family"]

    @property
    def ordered(self) -> bool:
        """Whether the model reads strings (every family but multilabel)."""
        return self.decoder.ordered

    def outputs(self, pixels: np.ndarray) -> np.ndarray:
        """Raw network outputs for ``(N, H, W)`` uint8 arrays from ``self.preprocessing.load``."""
        return self.backend(self.preprocessing.normalize(pixels))

    def predict_pixels(self, pixels: np.ndarray, decoding: DecodingSettings | None = None
                       ) -> list[Prediction]:
        """Predictions for ``(N, H, W)`` uint8 arrays from ``self.preprocessing.load``."""
        return self.decode(self.outputs(pixels), decoding)

    def decode(self, outputs: np.ndarray, decoding: DecodingSettings | None = None
               ) -> list[Prediction]:
        return [Prediction(self.alphabet.decode(d.labels), d.confidence, d.char_confidences,
                           self.decoder.ordered)
                for d in self.decoder(outputs, decoding or self.decoding)]

    def predict(
        self,
        images: ImageInput | Sequence[ImageInput],
        batch_size: int = 64,
        decoding: DecodingSettings | None = None,
    ) -> Prediction | list[Prediction]:
        """Read one image (path, bytes, PIL image or array) or a list of them, in batches."""
        single = not isinstance(images, (list, tuple))
        items = [images] if single else list(images)
        predictions: list[Prediction] = []
        for start in range(0, len(items), batch_size):
            chunk = items[start : start + batch_size]
            pixels = np.stack([self.preprocessing.load(item) for item in chunk])
            predictions.extend(self.predict_pixels(pixels, decoding))
        return predictions[0] if single else predictions
