"""``Recognizer``: load a model file once, then read captchas from any image source."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from captchalab.data.alphabet import Alphabet
from captchalab.data.preprocess import ImageInput, Preprocessing
from captchalab.runtime import ctc
from captchalab.runtime.artifact import ModelFile, load_model_file


@dataclass(frozen=True)
class Prediction:
    """What the model reads in one image."""

    text: str
    confidence: float  # probability of the whole text
    char_confidences: tuple[float, ...]  # probability of each character

    def to_dict(self) -> dict:
        return asdict(self) | {"char_confidences": list(self.char_confidences)}


@dataclass(frozen=True)
class DecodingSettings:
    """How network outputs become text; stored in the model file, overridable per call."""

    method: str = "beam"
    beam_width: int = 8
    length: int | None = None  # every training label had this length

    @classmethod
    def from_metadata(cls, metadata: dict) -> DecodingSettings:
        return cls(**metadata.get("decoding", {}))


class Recognizer:
    """A trained model ready to predict: preprocessing, network and decoder from one file.

    >>> r = Recognizer.load("runs/v2/model.safetensors")
    >>> r.predict("a.png").text
    """

    def __init__(self, model_file: ModelFile, path: str = "model", device: str = "cpu") -> None:
        from captchalab.runtime.torch_backend import TorchBackend

        self.path = path
        self.metadata = model_file.metadata
        self.alphabet = Alphabet(self.metadata["alphabet"])
        self.preprocessing = Preprocessing.from_dict(self.metadata["preprocessing"])
        self.decoding = DecodingSettings.from_metadata(self.metadata)
        self.backend = TorchBackend(model_file, path, device)

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu") -> Recognizer:
        """Load a ``.safetensors`` model file written by ``captchalab train``."""
        return cls(load_model_file(path), str(path), device)

    @property
    def family(self) -> str:
        return self.metadata["family"]

    def predict_pixels(self, pixels: np.ndarray, decoding: DecodingSettings | None = None
                       ) -> list[Prediction]:
        """Predictions for ``(N, H, W)`` uint8 arrays from ``self.preprocessing.load``."""
        return self.decode(self.backend(self.preprocessing.normalize(pixels)), decoding)

    def decode(self, log_probs: np.ndarray, decoding: DecodingSettings | None = None
               ) -> list[Prediction]:
        settings = decoding or self.decoding
        decoded = ctc.decode_batch(log_probs, settings.method, settings.beam_width, settings.length)
        return [
            Prediction(self.alphabet.decode(d.labels), d.confidence, d.char_confidences)
            for d in decoded
        ]

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
