"""Runtime: model files, decoding and the ``Recognizer`` that serves predictions."""

from captchalab.runtime.artifact import ModelFileError, load_model_file, save_model_file
from captchalab.runtime.decoded import DecodingSettings
from captchalab.runtime.recognizer import Prediction, Recognizer, UnorderedReadingError

__all__ = [
    "DecodingSettings",
    "ModelFileError",
    "Prediction",
    "Recognizer",
    "UnorderedReadingError",
    "load_model_file",
    "save_model_file",
]
