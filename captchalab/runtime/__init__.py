"""Runtime: model files and their cards, decoding, metrics and the ``Recognizer``
(torch-free but the PyTorch backend)."""

from captchalab.runtime.decoded import DecodingSettings
from captchalab.runtime.model_file import (
    ModelCard,
    ModelFileError,
    load_model_file,
    read_card,
    save_model_file,
)
from captchalab.runtime.recognizer import (
    FolderReading,
    ImageFailure,
    Prediction,
    Recognizer,
    UnorderedReadingError,
)

__all__ = [
    "DecodingSettings",
    "FolderReading",
    "ImageFailure",
    "ModelCard",
    "ModelFileError",
    "Prediction",
    "Recognizer",
    "UnorderedReadingError",
    "load_model_file",
    "read_card",
    "save_model_file",
]
